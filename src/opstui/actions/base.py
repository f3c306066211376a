"""What every action is: its settings, the row it acts on, the values it accepts, and what it prepares to run."""

from __future__ import annotations

import fnmatch
import re
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from opstui.config.actions import ROW_FIELDS
from opstui.errors import ActionError
from opstui.model import LockInfo, ProcessInfo, QueueInfo, Snapshot
from opstui.redact import redact

Stream = Literal["out", "err", "info"]
"""Where a line came from: the program's stdout or stderr, or opstui saying what it did ("info")."""


Emit = Callable[[Stream, str], None]
"""Where an action writes its output, line by line: `emit(stream, text)`; the run redacts and keeps it."""

# fullmatch, never match with `$`: in Python `$` also matches before a final newline.
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,127}")
SAFE_RULE = "only letters, digits and . _ : @ + - are allowed, starting with a letter or digit (at most 128)"


def safe_value(label: str, value: str) -> str:
    """`value` if it can be passed to a program as one argument without meaning anything else; else refuse.

    The value becomes a whole argv element and no shell ever sees it, so `;`, `$(...)` or a newline could
    not run anything anyway; the pattern also refuses what a program could misread: a leading `-` (an
    option), whitespace, paths, quotes and globs.
    """
    if _SAFE.fullmatch(value):
        return value
    shown = redact(repr(value if len(value) <= 60 else value[:60] + "..."))
    if not value:
        problem = "it is empty"
    elif value.startswith("-"):
        problem = "it starts with '-', so the program would read it as an option"
    elif any(c.isspace() for c in value):
        problem = "it contains whitespace or a line break"
    elif len(value) > 128:
        problem = "it is too long"
    else:
        bad = sorted({c for c in value if not re.match(r"[A-Za-z0-9_.:@+-]", c)})
        problem = "it contains " + " ".join(repr(c) for c in bad[:6])
    raise ActionError(f"{label} {shown} is refused as an argument: {problem}; {SAFE_RULE}")


Row = ProcessInfo | QueueInfo | LockInfo


@dataclass(frozen=True, slots=True)
class Target:
    """The row an action acts on, as found in the current snapshot: its scope, key, name and known fields."""

    scope: str
    key: str
    name: str
    fields: Mapping[str, str]
    row: Row | None = field(default=None, compare=False, repr=False)
    """The row itself, for a built-in that needs more than the fields (its source, a start time, an expiry)."""

    @classmethod
    def of(cls, row: Row) -> Target:
        scope = scope_of(row)
        fields = {f: str(getattr(row, f)) for f in ROW_FIELDS[scope] if getattr(row, f, None) is not None}
        return cls(scope=scope, key=row.key, name=row.name, fields=fields, row=row)

    @property
    def source(self) -> str | None:
        """The name of the source that reported the row (`pm2`, `redis main`): where a built-in acts."""
        return self.row.source if self.row is not None else None

    def value(self, field_name: str) -> str:
        """The row's value of `field_name`, checked safe to pass as an argument."""
        label = f"{self.scope} {field_name}"
        if field_name not in self.fields:
            raise ActionError(f"the {self.scope} row {self.key!r} has no {field_name}")
        return safe_value(label, self.fields[field_name])


def scope_of(row: Row) -> str:
    if isinstance(row, ProcessInfo):
        return "process"
    if isinstance(row, QueueInfo):
        return "queue"
    return "lock"


def rows_of(snapshot: Snapshot, scope: str) -> tuple[Row, ...]:
    rows: dict[str, tuple[Row, ...]] = {
        "process": snapshot.processes,
        "queue": snapshot.queues,
        "lock": snapshot.locks,
    }
    return rows.get(scope, ())


def row_args(row: Row) -> dict[str, str]:
    """The `args` that name this row to `Actions.plan` (`{"process.key": "pm2:api"}`): what the TUI passes."""
    return {f"{scope_of(row)}.key": row.key}


@dataclass(frozen=True, slots=True)
class Parameter:
    """A value the person running an action supplies (not from a row): a script's mode, its value."""

    name: str
    help: str
    choices: tuple[str, ...] = ()
    """When not empty, the value must be one of these (the TUI and the bot offer them as a list)."""
    when: tuple[str, tuple[str, ...]] | None = None
    """Needed only when another parameter has one of these values, e.g. `("mode", ("company",))`."""


@dataclass(frozen=True, slots=True)
class Requirement:
    """What must be given before a run starts: nothing, a confirmation, or a typed phrase."""

    kind: Literal["none", "confirm", "typed"]
    phrase: str | None = None
    """For "typed": the exact text the person must type (the action's name for a dangerous action, the row's
    name for a built-in that deletes or releases something); None only when no row is known yet (listings)."""

    @property
    def text(self) -> str:
        if self.kind == "typed":
            return f"dangerous: type {self.phrase!r} to run it" if self.phrase else "dangerous: type the row's name"
        return "asks for confirmation" if self.kind == "confirm" else "runs without asking"


@dataclass(frozen=True, slots=True)
class Outcome:
    """How the work of a run ended, as the action saw it (the runner adds timeouts and cancellations)."""

    ok: bool
    exit_status: int | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class Prepared:
    """One concrete, validated invocation: `shown` is exactly what will run (secrets masked)."""

    shown: tuple[str, ...]
    execute: Callable[[Emit], Awaitable[Outcome]] = field(compare=False, repr=False)
    identity: tuple[str, ...] | None = field(default=None, compare=False)
    """What may not change between showing and running, when that is less than `shown`: a built-in shows how
    many jobs wait now and names its dead-letter key after the time, and neither makes it another run."""

    def same_run(self, other: Prepared) -> bool:
        """Whether `other` would do what this one does (what `Actions.start` checks before running a plan)."""
        mine = self.identity if self.identity is not None else self.shown
        theirs = other.identity if other.identity is not None else other.shown
        return mine == theirs


class Action(ABC):
    """One thing a person can run. Subclass it for a new kind and implement `describe` and `prepare`.

    The guard, the audit log, one-run-at-a-time, timeouts and output streaming all happen around
    `prepare` and `Prepared.execute`, in `Actions`; a kind never has to repeat them.
    """

    kind: ClassVar[str]

    def __init__(
        self,
        *,
        name: str,
        description: str = "",
        key: str | None = None,
        scope: str = "global",
        rows: tuple[str, ...] = (),
        confirm: bool = True,
        dangerous: bool = False,
        timeout: float = 60.0,
    ) -> None:
        self.name = name
        self.description = description
        self.key = key
        self.scope = scope
        self.rows = rows
        self.confirm = confirm
        self.dangerous = dangerous
        self.timeout = timeout

    def offered_on(self, target: Target) -> bool:
        """Whether this action is offered on that row (a built-in narrows it further, e.g. to PM2 processes)."""
        if target.scope != self.scope:
            return False
        return not self.rows or any(fnmatch.fnmatchcase(target.name, pattern) for pattern in self.rows)

    def parameters(self) -> tuple[Parameter, ...]:
        return ()

    def requirement(self, target: Target | None) -> Requirement:
        """Dangerous -> the name typed; confirm -> a confirmation; a built-in may decide per row (a stale lock)."""
        if self.dangerous:
            return Requirement("typed", self.name)
        return Requirement("confirm" if self.confirm else "none")

    def exclusive_key(self, target: Target | None) -> str:
        """Runs with the same key never overlap: by default one run at a time per action."""
        return self.name

    @abstractmethod
    def describe(self) -> tuple[str, ...]:
        """What it would run, placeholders and choices left open, secrets masked (`opstui action list`)."""

    @abstractmethod
    def prepare(self, target: Target | None, params: Mapping[str, str]) -> Prepared | Awaitable[Prepared]:
        """Validate the row and parameters and return exactly what will run; raise ActionError to refuse.

        May be a coroutine when what will run must be looked up first (the PM2 ids of a process, the lock
        row as the database holds it now); it then bounds its own waiting.
        """

    def check_params(self, params: Mapping[str, str]) -> dict[str, str]:
        """The parameters, each known, needed, one of its choices and safe as an argument; else refuse."""
        declared = {p.name: p for p in self.parameters()}
        unknown = sorted(set(params) - set(declared))
        if unknown:
            takes = ", ".join(declared) or "no values"
            raise ActionError(f"{self.name} takes {takes}; got {', '.join(unknown)}")
        checked: dict[str, str] = {}
        for parameter in declared.values():
            needed = parameter.when is None or params.get(parameter.when[0]) in parameter.when[1]
            value = params.get(parameter.name)
            if value is None:
                if needed:
                    choices = f": {', '.join(parameter.choices)}" if parameter.choices else f" ({parameter.help})"
                    raise ActionError(f"{self.name} needs a {parameter.name}{choices}")
                continue
            if not needed and parameter.when is not None:
                field_name, values = parameter.when
                raise ActionError(f"{parameter.name} is only for {field_name} {', '.join(values)}")
            if parameter.choices and value not in parameter.choices:
                raise ActionError(
                    f"{parameter.name} {redact(repr(value))} is not one of: {', '.join(parameter.choices)}"
                )
            checked[parameter.name] = safe_value(parameter.name, value)
        return checked

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"
