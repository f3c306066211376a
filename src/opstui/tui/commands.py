"""The one registry of commands: it feeds the key bindings, the footer, the help screen and the palette.

Every command, however it was started (a key, the palette, a click), runs through `OpsApp.run_command`,
the one guard that refuses mutating commands in read-only mode and asks before running them. The
recovery actions plug in here (`tui/actions.py`): `Command(..., mutating=True, scope="processes",
describe=...)`, where `describe` may look things up first and return a `Question` (what will run, and a
phrase to type for a dangerous one).
"""

from __future__ import annotations

import contextlib
import difflib
import re
import string
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual.binding import Binding
from textual.keys import Keys, _character_to_key

from opstui.config._load import locate
from opstui.errors import ConfigError
from opstui.units import format_duration

if TYPE_CHECKING:
    from opstui.tui.app import OpsApp

RESERVED_KEYS = {"ctrl+q": "quit (Textual's own)", "ctrl+p": "the command palette", "ctrl+c": "copy"}
"""Keys Textual keeps for itself; a command mapped to them would never run."""
REFRESH_CHOICES = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_MODIFIERS = {"ctrl", "shift", "alt", "meta", "super", "hyper"}
_KEY_NAMES = (
    {k.value.rsplit("+", 1)[-1] for k in Keys}
    | {_character_to_key(c) for c in string.printable if c.strip()}
    | {f"f{n}" for n in range(1, 25)}
    | {"space", "enter", "tab", "backspace", "escape"}
)


class Cancelled(Exception):
    """The person backed out while a command was being set up (a value not picked): nothing ran."""


@dataclass(frozen=True, slots=True)
class Question:
    """What the confirmation asks before a mutating command runs."""

    detail: str
    """Exactly what will run, one fact per line."""
    title: str | None = None
    """The dialog's title when it should say more than the command's (which row)."""
    typed: str | None = None
    """A phrase the person must type to confirm (a dangerous action: a queue's or a lock's name)."""
    ask: bool = True
    """False: nothing needs confirming (an action with `confirm = false`): it runs at once."""
    about: Any = None
    """What `run` needs from the asking (a recovery action's checked plan); `context.question.about`."""


@dataclass(frozen=True, slots=True)
class CommandContext:
    """Where a command was started: the app, the pane the user is in and the item under its cursor; for a
    confirmed command also the question asked and what was typed."""

    app: OpsApp
    pane: str | None
    item: Any
    question: Question | None = None
    typed: str | None = None


Asked = str | Question


@dataclass(frozen=True, slots=True)
class Command:
    id: str
    """Stable name for `tui.keys` in the config; shown on the help screen."""
    title: str
    """What the palette and the help screen call it."""
    help: str
    run: Callable[[CommandContext], object]
    """Does the work; may return an awaitable, which runs as a worker (the UI stays live)."""
    key: str | None = None
    """Default key(s), comma separated, in Textual's names (`p`, `question_mark`, `ctrl+r`)."""
    group: str = "View"
    footer: str | None = None
    """The short label in the footer; None keeps the command out of the footer."""
    mutating: bool = False
    """Changes the watched system: refused in read-only mode, and confirmed first unless `confirm` is False."""
    confirm: bool = True
    describe: Callable[[CommandContext], Asked | Awaitable[Asked]] | None = None
    """For the confirmation: exactly what will run (the command line, the key, the process). A coroutine
    when it must be looked up first; raising OpsError then refuses the command with its message."""
    scope: str | None = None
    """A pane id: the command acts on the item under that pane's cursor and is only offered there."""
    offered: Callable[[Any], bool] | None = None
    """Whether it is offered on the item under the cursor (an action limited to some rows); default: all."""
    not_run: Callable[[CommandContext, str, str], object] | None = None
    """Told when the guard refused it or the person said no: (context, "refused" | "cancelled", reason).
    The recovery actions write this to their audit log."""

    def applies(self, context: CommandContext) -> bool:
        if self.scope is None:
            return True
        return context.pane == self.scope and context.item is not None and self.offered_on(context.item)

    def offered_on(self, item: Any) -> bool:
        return self.offered is None or self.offered(item)


class CommandRegistry:
    def __init__(self, commands: Iterable[Command] = ()) -> None:
        self._commands: dict[str, Command] = {}
        for command in commands:
            self.add(command)

    def add(self, command: Command) -> None:
        if not _ID.match(command.id):
            raise ValueError(f"command id {command.id!r} may hold only letters, digits, '.', '-' and '_'")
        if command.id in self._commands:
            raise ValueError(f"two commands have the id {command.id!r}")
        self._commands[command.id] = command

    def get(self, command_id: str) -> Command:
        return self._commands[command_id]

    def __iter__(self) -> Iterator[Command]:
        return iter(self._commands.values())

    def __contains__(self, command_id: object) -> bool:
        return command_id in self._commands

    def bindings(self) -> list[Binding]:
        """One binding per command with a key; its id is the command's, so `tui.keys` can move it."""
        return [
            Binding(
                command.key,
                f"command('{command.id}')",
                command.footer or command.title,
                show=command.footer is not None,
                id=command.id,
            )
            for command in self
            if command.key
        ]

    def keymap(self, wanted: Mapping[str, str], *, file: Path | None = None) -> dict[str, str]:
        """Check `tui.keys` and return it in Textual's key names; raises ConfigError naming the key and problem.

        Textual would silently let a remapped key displace another command's key, so clashes are checked
        here: every key must end up with at most one command.
        """

        def problem(message: str, command_id: str) -> ConfigError:
            line = None
            if file is not None:
                with contextlib.suppress(OSError, UnicodeDecodeError):
                    line = locate(file.read_text(encoding="utf-8"), ("tui", "keys", command_id))
            return ConfigError(message, file=str(file) if file else None, key=f"tui.keys.{command_id}", line=line)

        keymap: dict[str, str] = {}
        for command_id, keys in wanted.items():
            if command_id not in self._commands:
                hint = difflib.get_close_matches(command_id, list(self._commands), n=1)
                known = f"did you mean '{hint[0]}'?" if hint else "the help screen (?) lists the ids"
                raise problem(f"no command has the id '{command_id}' ({known})", command_id)
            try:
                keymap[command_id] = ",".join(normalise_key(k) for k in keys.split(",") if k.strip())
            except ValueError as exc:
                raise problem(str(exc), command_id) from None
        owner: dict[str, str] = {}
        for command in self:
            for key in self.keys_of(command, keymap):
                if key in RESERVED_KEYS:
                    raise problem(f"'{key}' is {RESERVED_KEYS[key]} and cannot be remapped", command.id)
                if key in owner:
                    other = owner[key]
                    blame, also = (command.id, other) if command.id in keymap else (other, command.id)
                    raise problem(f"'{key}' is also the key of '{also}'; give one of them another key", blame)
                owner[key] = command.id
        return keymap

    def keys_of(self, command: Command, keymap: Mapping[str, str]) -> list[str]:
        keys = keymap.get(command.id, command.key) or ""
        return [k for k in keys.split(",") if k]


def normalise_key(key: str) -> str:
    """`?` -> `question_mark`, `Ctrl+R` -> `ctrl+r`; raises ValueError for a key Textual cannot send."""
    key = key.strip()
    if len(key) == 1:
        return _character_to_key(key)
    parts = key.lower().split("+")
    *modifiers, name = parts
    if len(name) == 1:
        name = _character_to_key(name)
    if any(m not in _MODIFIERS for m in modifiers) or name not in _KEY_NAMES:
        raise ValueError(f"'{key}' is not a key; write e.g. 'p', 'space', 'f5', 'ctrl+r' or '?'")
    return "+".join([*modifiers, name])


def builtin_commands(panes: Iterable[tuple[str, str]], themes: Iterable[str]) -> list[Command]:
    """opstui's own commands: moving around, pausing, the refresh interval, themes, help and quit.

    `panes` is (pane id, title) in order; the first nine get the keys 1 to 9.
    """
    commands = [
        Command(
            "help",
            "Help: keys and commands",
            "Show every key and command",
            lambda c: c.app.show_help(),
            "question_mark",
            footer="help",
        ),
        Command(
            "pause",
            "Pause or resume",
            "Stop redrawing (the sources keep reading); again to resume",
            lambda c: c.app.toggle_pause(),
            "p",
            footer="pause",
        ),
        Command(
            "next_pane",
            "Next pane",
            "Move to the next pane",
            lambda c: c.app.move_pane(1),
            "tab",
            "Navigate",
            footer="next pane",
        ),
        Command(
            "previous_pane",
            "Previous pane",
            "Move to the previous pane",
            lambda c: c.app.move_pane(-1),
            "shift+tab",
            "Navigate",
        ),
        Command(
            "refresh_faster",
            "Redraw more often",
            "A shorter refresh interval",
            lambda c: c.app.step_refresh(-1),
            "plus",
            "Refresh",
        ),
        Command(
            "refresh_slower",
            "Redraw less often",
            "A longer refresh interval",
            lambda c: c.app.step_refresh(1),
            "minus",
            "Refresh",
        ),
        Command("quit", "Quit", "Leave opstui (a daemon keeps running)", lambda c: c.app.exit(), "q", footer="quit"),
    ]
    for number, (pane_id, title) in enumerate(panes, start=1):
        commands.append(
            Command(
                f"goto.{pane_id}",
                f"Go to {title}",
                f"Show and focus the {title} pane",
                _goto(pane_id),
                str(number) if number <= 9 else None,
                "Navigate",
            )
        )
    for seconds in REFRESH_CHOICES:
        label = format_duration(seconds)
        commands.append(
            Command(
                f"refresh.{label}",
                f"Refresh every {label}",
                "Redraw from the latest facts at this interval",
                _refresh_every(seconds),
                group="Refresh",
            )
        )
    for name in themes:
        commands.append(
            Command(
                f"theme.{name}",
                f"Theme: {name}",
                "Switch to this theme",
                _theme(name),
                group="Theme",
            )
        )
    order = ["Navigate", "View", "Refresh", "Theme"]
    return sorted(commands, key=lambda command: order.index(command.group))


def _goto(pane_id: str) -> Callable[[CommandContext], object]:
    return lambda context: context.app.activate_pane(pane_id)


def _refresh_every(seconds: float) -> Callable[[CommandContext], object]:
    return lambda context: context.app.set_refresh(seconds)


def _theme(name: str) -> Callable[[CommandContext], object]:
    return lambda context: context.app.switch_theme(name)
