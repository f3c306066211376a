"""The dashboard app: takes each snapshot the engine publishes and redraws from the latest one on a timer.

Data never waits on the screen and the screen never waits on data: the engine reads its sources in its own
jobs (threads for blocking work) and hands over immutable snapshots in a message that replaces any older
one still queued; the app keeps only the latest and draws it every `tui.refresh` seconds, skipping panes
nobody sees and the whole dashboard while a dialog covers it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from textual.app import App, SystemCommand
from textual.message import Message
from textual.screen import Screen

from opstui.actions import Actions, AuditEntry, Run
from opstui.actions.runner import RunEvent, RunResult
from opstui.config import Config
from opstui.daemon import STOP_BUDGET, DaemonPresence
from opstui.errors import OpsError
from opstui.model import ProcessInfo, Snapshot
from opstui.tui.commands import (
    REFRESH_CHOICES,
    Asked,
    Cancelled,
    Command,
    CommandContext,
    CommandRegistry,
    Question,
    builtin_commands,
)
from opstui.tui.header import Presence
from opstui.tui.panes import (
    ActionsPane,
    ActivityPane,
    AlertsPane,
    DispatchPane,
    HealthPane,
    LocksPane,
    MemoryPane,
    Pane,
    PaneState,
    ProcessesPane,
    QueuesPane,
    View,
    assign_sources,
)
from opstui.tui.screens import ConfirmScreen, Dashboard, HelpScreen
from opstui.tui.themes import STATUS_DEFAULTS, Themes, choose_theme, load_themes, theme_dirs
from opstui.units import format_duration

TERMINAL_CHECK_EVERY = 3.0
"""Seconds between checks that the terminal is still there (a dropped SSH session must not leave us spinning)."""
HANG_UP_BUDGET = 3.0
"""Seconds a shutdown after the terminal went away may take before the process ends regardless."""
PRESENCE_EVERY = 5.0
ACTIONS_SHOWN = 30
"""Audit entries the Actions pane lists (`opstui audit` shows them all)."""


class Feed(Protocol):
    """Where snapshots come from: the engine, or a scripted feed in tests and benchmarks."""

    @property
    def snapshot(self) -> Snapshot: ...

    def subscribe(self, callback: Callable[[Snapshot], None]) -> Callable[[], None]: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class SnapshotReady(Message):
    """A new snapshot from the engine; a newer one replaces an older one still in the queue."""

    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__()
        self.snapshot = snapshot

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, SnapshotReady)


class RunChanged(Message):
    """A run of this opstui wrote output or ended; a newer one replaces an older one still queued."""

    def __init__(self, run: Run, event: RunEvent) -> None:
        super().__init__()
        self.run = run
        self.event = event

    def can_replace(self, message: Message) -> bool:
        # The end of a run is announced once; only output lines coalesce.
        return isinstance(message, RunChanged) and not isinstance(message.event, RunResult)


class AuditRead(Message):
    """The latest audit entries, read off the event loop."""

    def __init__(self, entries: list[AuditEntry]) -> None:
        super().__init__()
        self.entries = entries


class CommandOutcome(Message):
    """What became of a command: `ran`, `cancelled`, or `refused` (read-only mode, or nothing to act on).

    The audit log of the recovery actions listens for these; so do the tests.
    """

    def __init__(self, command: Command, context: CommandContext, outcome: str) -> None:
        super().__init__()
        self.command = command
        self.context = context
        self.outcome = outcome


class OpsApp(App[int]):
    CSS_PATH = "opstui.tcss"
    TITLE = "opstui"
    # Terminals over SSH and tmux gain nothing from motion, and every frame costs.
    animation_level = "none"

    def __init__(
        self,
        config: Config,
        *,
        feed: Feed | None = None,
        clock: Callable[[], float] = time.time,
        host: str | None = None,
        presence: Callable[[], DaemonPresence | None] | None = None,
        theme: str | None = None,
        themes: Themes | None = None,
        commands: Iterable[Command] = (),
        actions: Actions | None = None,
        demo: Path | None = None,
    ) -> None:
        """`commands` are added to opstui's own (the recovery actions, silencing alerts): their keys are
        bound, checked against `tui.keys`, listed on the help screen and in the palette, and they run
        through `run_command`, the one guard. `actions` (whose commands those are) feed the Actions pane:
        their runs as they happen and the audit log."""
        super().__init__()
        if feed is None:
            from opstui.engine import build_engine

            feed = build_engine(config)
        self.config = config
        self.feed = feed
        self.clock = clock
        self.host = host or socket.gethostname()
        self.demo = demo
        self.read_only = config.general.read_only
        self.tz = ZoneInfo(config.general.timezone)
        self.refresh_every = config.tui.refresh
        self.latest = feed.snapshot
        self.paused_at: float | None = None
        self.presence = Presence(None)
        self._presence_store: Any = None
        """The state database the daemon's presence is read from, opened on the first read; closed on unmount."""
        self._read_presence = presence or self._presence_from_state_store()
        self._unsubscribe: Callable[[], None] | None = None
        self._full_layout = False
        self._remembered_sources: dict[str, frozenset[str]] = {}
        self._drawn = False
        self._view: View | None = None
        self.actions = actions

        self.panes: list[Pane] = [
            ProcessesPane(),
            QueuesPane(),
            MemoryPane(),
            LocksPane(),
            DispatchPane(),
            HealthPane(),
            ActivityPane(self.focused_process),
            AlertsPane(),
            ActionsPane(actions),
        ]
        self.active = self.panes[0].pane_id
        self.dashboard = Dashboard(self.panes)

        found = themes if themes is not None else load_themes(theme_dirs(config))
        for registered in found.themes.values():
            self.register_theme(registered)
        colours = {"standard": 16, "256": 256, "truecolor": 1 << 24, "windows": 16}.get(str(self.console.color_system))
        self.theme, self._theme_message = choose_theme(found, theme or config.tui.theme, colours=colours or 16)

        self.commands = CommandRegistry(
            [*builtin_commands(((p.pane_id, p.title) for p in self.panes), sorted(found.themes)), *commands]
        )
        self.keymap = self.commands.keymap(config.tui.keys, file=config.path)
        for binding in self.commands.bindings():
            # Bindings built at run time (themes and actions come from files): Textual's own way to add one.
            self._bindings._add_binding(binding)
        self.set_keymap(self.keymap)

    # ------------------------------------------------------------------------------------------- lifecycle

    def get_default_screen(self) -> Screen[Any]:
        return self.dashboard

    def get_theme_variable_defaults(self) -> dict[str, str]:
        return dict(STATUS_DEFAULTS)

    def on_mount(self) -> None:
        if self.demo is not None:
            self.notify(
                f"A simulated bot backend with real Redis and PostgreSQL, in {self.demo}. Quitting removes it all.",
                title="opstui demo",
                timeout=10,
                markup=False,
            )
        if self._theme_message:
            self.notify(self._theme_message, title="Theme", severity="warning", timeout=15, markup=False)
        if not self.is_headless:
            self._watch_terminal()
        self._timer = self.set_interval(self.refresh_every, self._tick, name="refresh")
        self.set_interval(PRESENCE_EVERY, self._refresh_presence, name="presence")
        self._refresh_presence()
        if self.actions is not None:
            # Runs of other opstuis (the daemon's bot, the CLI) reach this screen through the audit log.
            self.set_interval(PRESENCE_EVERY, self.read_audit, name="audit")
            self.read_audit()
        self._unsubscribe = self.feed.subscribe(self._snapshot_published)
        self.render_now()
        # The sources start once the first frame is on screen: nobody waits on the scheduler's import.
        self.call_after_refresh(self._start_feed)

    async def _start_feed(self) -> None:
        await self.feed.start()

    def _snapshot_published(self, snapshot: Snapshot) -> None:
        # Called by the engine on every publish; posting is all it does, so the engine never waits for the UI.
        self.post_message(SnapshotReady(snapshot))

    async def on_unmount(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self.actions is not None:
            # A run still going is stopped (its process group too) and recorded before opstui leaves.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.actions.close(), timeout=STOP_BUDGET)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.feed.stop(), timeout=STOP_BUDGET)
        await self.workers.wait_for_complete()  # a presence read still going must not race the close
        if self._presence_store is not None:
            self._presence_store.close()

    def _watch_terminal(self) -> None:
        """Leave cleanly when the terminal goes away: Textual handles neither SIGHUP nor a dead stdin.

        Without this a dropped SSH session either kills us without cleanup (SIGHUP) or, with SIGHUP
        ignored (nohup, some multiplexers), leaves the input thread spinning at full CPU.
        """
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self._hang_up)
        loop.add_signal_handler(signal.SIGTERM, lambda: self.exit(return_code=128 + signal.SIGTERM))
        self.set_interval(TERMINAL_CHECK_EVERY, self._check_terminal, name="terminal")

    def _check_terminal(self) -> None:
        stdin = sys.__stdin__
        if stdin is None or stdin.closed or not stdin.isatty():
            self._hang_up()

    def _hang_up(self) -> None:
        """The terminal is gone: exit without drawing on it, and for certain.

        Textual's output thread dies on the first write to a hung-up terminal (EIO); if more than its queue
        holds is still to be written, the shutdown then waits for it forever. So from now on output goes to
        /dev/null, and should the shutdown still stall, the process ends after HANG_UP_BUDGET seconds (the
        demo's reaper then cleans up what it started).
        """
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.__stderr__.fileno() if sys.__stderr__ else 2)
        os.dup2(devnull, sys.__stdout__.fileno() if sys.__stdout__ else 1)
        os.close(devnull)
        code = 128 + signal.SIGHUP
        watchdog = threading.Timer(HANG_UP_BUDGET, os._exit, args=(code,))
        watchdog.daemon = True
        watchdog.start()
        self.exit(return_code=code)

    def _presence_from_state_store(self) -> Callable[[], DaemonPresence | None]:
        def read() -> DaemonPresence | None:
            from opstui.daemon import read_presence
            from opstui.state import StateStore

            if self._presence_store is None:
                self._presence_store = StateStore.in_dir(self.config.state_dir())
            return read_presence(self._presence_store)

        return read

    def _refresh_presence(self) -> None:
        self.run_worker(
            self._read_presence_in_thread, thread=True, exclusive=True, group="presence", exit_on_error=False
        )

    def _read_presence_in_thread(self) -> None:
        # SQLite is quick but still I/O: off the event loop, like every other read.
        from opstui.errors import OpsError

        try:
            self.presence = Presence(self._read_presence())
        except OpsError as exc:
            self.presence = Presence(None, error=str(exc))

    # ------------------------------------------------------------------------------------------- drawing

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        self.latest = message.snapshot
        if not self._drawn and self.paused_at is None:
            # Each source's first facts are drawn at once (a slow one must not hold back the others' for a whole
            # refresh); after that, on the refresh timer.
            self._drawn = all(status.checked_at is not None for status in message.snapshot.sources.values())
            self.render_now()

    def _tick(self) -> None:
        if self.screen is self.dashboard and self.paused_at is None:
            self.render_now()

    def render_now(self) -> None:
        """Draw the latest snapshot: the header and tab bar, and every pane that is on screen."""
        if not self.dashboard.is_mounted:
            return
        view = self._make_view()
        states = {pane.pane_id: pane.state(view) for pane in self.panes}
        with self.batch_update():
            self._show_header(view)
            self.dashboard.panebar.show_panes([(p.pane_id, p.tab_label) for p in self.panes], states, self.active)
            for pane in self.panes:
                if self.pane_visible(pane):
                    pane.show(view)
        active = self.pane(self.active)
        if self.screen is self.dashboard and self.focused in (None, active) and active.focus_target is not active:
            # The pane's table just got its first rows: the keys go to it now.
            active.focus_target.focus(scroll_visible=False)

    def render_pane(self, pane_id: str) -> None:
        pane = self.pane(pane_id)
        if self._view is not None and self.pane_visible(pane) and self.paused_at is None:
            pane.show(self._view)

    def _make_view(self) -> View:
        snapshot = self.latest
        sources = assign_sources(snapshot, self.panes, self._remembered_sources)
        self._remembered_sources = dict(sources)
        self._view = View(snapshot=snapshot, now=self.clock(), tz=self.tz, sources=sources, alerts=self.config.alerts)
        return self._view

    def _show_header(self, view: View) -> None:
        self.dashboard.header.show(
            view,
            host=self.host,
            presence=self.presence,
            refresh=self.refresh_every,
            paused_at=self.paused_at,
            compact=self.dashboard.size.width < 100,
        )

    def pane_visible(self, pane: Pane) -> bool:
        return self._full_layout or pane.pane_id == self.active

    def fit_layout(self, full: bool) -> None:
        """All panes at once on a big terminal, one at a time with a tab bar on a small one."""
        if full == self._full_layout and self.dashboard.has_class("-full" if full else "-tabbed"):
            return
        self._full_layout = full
        self.dashboard.set_class(full, "-full")
        self.dashboard.set_class(not full, "-tabbed")
        self.render_now()
        # The focused table may just have been hidden (or nothing had the focus yet, at start).
        self.pane(self.active).focus_target.focus(scroll_visible=False)

    def pane_states(self) -> dict[str, PaneState]:
        view = self._view or self._make_view()
        return {pane.pane_id: pane.state(view) for pane in self.panes}

    # ------------------------------------------------------------------------------------------- panes

    def pane(self, pane_id: str) -> Pane:
        return next(p for p in self.panes if p.pane_id == pane_id)

    def activate_pane(self, pane_id: str, *, focus: bool = True) -> None:
        """Make a pane the current one: shown (small layout), drawn, and with the keyboard focus."""
        changed = pane_id != self.active
        self.active = pane_id
        for pane in self.panes:
            pane.set_class(pane.pane_id == pane_id, "-active")
        for column in self.dashboard.query(".column"):
            column.set_class(self.pane(pane_id) in column.children, "-current")
        if changed and not self._full_layout:
            self.render_now()  # it was hidden, so it was not drawn
        elif changed:
            self.dashboard.panebar.show_panes(
                [(p.pane_id, p.tab_label) for p in self.panes], self.pane_states(), self.active
            )
        if changed:
            self.refresh_bindings()  # the footer shows the new pane's row commands
        if focus:
            self.pane(pane_id).focus_target.focus(scroll_visible=False)

    def move_pane(self, step: int) -> None:
        ids = [p.pane_id for p in self.panes]
        self.activate_pane(ids[(ids.index(self.active) + step) % len(ids)])

    def focused_process(self) -> ProcessInfo | None:
        selected = self.pane("processes").selected
        return selected if isinstance(selected, ProcessInfo) else None

    # ------------------------------------------------------------------------------------------- actions

    def follow_run(self, run: Run) -> None:
        """Show a run this TUI started in the Actions pane as it goes, and say how it ended."""
        pane = self.pane("actions")
        assert isinstance(pane, ActionsPane)

        def changed(event: RunEvent) -> None:
            self.post_message(RunChanged(run, event))

        run.subscribe(changed)
        self.notify(f"{run.name} started: its output is in the Actions pane", timeout=4, markup=False)
        pane.show_newest = True
        self.render_pane("actions")

    def on_run_changed(self, message: RunChanged) -> None:
        if isinstance(message.event, RunResult):
            result = message.event
            self.notify(
                f"{message.run.name}: {result.summary}",
                title="Action",
                severity="information" if result.ok else "error",
                timeout=8 if result.ok else 20,
                markup=False,
            )
            self.read_audit()
        self.render_pane("actions")

    def read_audit(self) -> None:
        if self.actions is not None:
            self.run_worker(self._read_audit_in_thread, thread=True, exclusive=True, group="audit", exit_on_error=False)

    def _read_audit_in_thread(self) -> None:
        assert self.actions is not None
        try:
            entries = self.actions.audit.recent(ACTIONS_SHOWN)
        except OpsError:
            return  # the state database is busy or gone; the next read tries again
        self.post_message(AuditRead(list(reversed(entries))))

    def on_audit_read(self, message: AuditRead) -> None:
        pane = self.pane("actions")
        assert isinstance(pane, ActionsPane)
        if message.entries != pane.entries:
            pane.entries = message.entries
            self.render_pane("actions")

    # ------------------------------------------------------------------------------------------- commands

    def action_command(self, command_id: str) -> None:
        self.run_command(command_id)

    def command_context(self) -> CommandContext:
        return CommandContext(self, self.active, self.pane(self.active).selected)

    def run_command(self, command_id: str) -> None:
        """The one guard every command passes: scope, read-only mode, confirmation; then it runs."""
        command = self.commands.get(command_id)
        context = self.command_context()
        if command.mutating and self.read_only:
            reason = "opstui runs read-only (--read-only or general.read_only)"
            self.notify(f"{command.title} refused: {reason}", severity="warning", markup=False)
            self._not_run(command, context, "refused", reason)
            return
        if not command.applies(context):
            where = self.pane(command.scope or self.active).title
            if context.pane == command.scope and context.item is not None:
                reason = f"not offered on this row of {where}"
            else:
                reason = f"move to a row of {where} first"
            self.notify(f"{command.title}: {reason}", markup=False)
            self._not_run(command, context, "refused", reason)
            return
        if command.mutating and command.confirm:
            asked = command.describe(context) if command.describe else command.help
            if inspect.isawaitable(asked):
                # Looked up first (a plan reads PM2, Redis or the database): the screen stays live meanwhile.
                self.run_worker(
                    self._ask_when_known(command, context, asked),
                    group=f"ask:{command.id}",
                    exclusive=True,
                    exit_on_error=False,
                )
            else:
                self._ask(command, context, asked)
            return
        self._execute(command, context)

    async def _ask_when_known(self, command: Command, context: CommandContext, asked: Awaitable[Asked]) -> None:
        try:
            question = await asked
        except Cancelled:
            self.post_message(CommandOutcome(command, context, "cancelled"))
            return
        except OpsError as exc:  # refused while looking (and recorded by whoever refused)
            self.notify(f"{command.title} refused: {exc}", severity="warning", markup=False, timeout=10)
            self.post_message(CommandOutcome(command, context, "refused"))
            return
        self._ask(command, context, question)

    def _ask(self, command: Command, context: CommandContext, asked: Asked) -> None:
        question = asked if isinstance(asked, Question) else Question(asked)
        context = dataclasses.replace(context, question=question)
        if not question.ask:
            self._execute(command, context)
            return

        def answered(answer: bool | str | None) -> None:
            if answer is True or isinstance(answer, str):
                self._execute(command, dataclasses.replace(context, typed=answer if isinstance(answer, str) else None))
            else:
                self._not_run(command, context, "cancelled", "pressed No in the TUI")

        self.push_screen(ConfirmScreen(command.title, question), answered)

    def _execute(self, command: Command, context: CommandContext) -> None:
        result = command.run(context)
        if inspect.isawaitable(result):
            self.run_worker(result, group=f"command:{command.id}", exclusive=True, exit_on_error=False)
        self.post_message(CommandOutcome(command, context, "ran"))

    def _not_run(self, command: Command, context: CommandContext, outcome: str, reason: str) -> None:
        if command.not_run is not None:
            told = command.not_run(context, outcome, reason)
            if inspect.isawaitable(told):
                self.run_worker(told, group=f"not-run:{command.id}", exit_on_error=False)
        self.post_message(CommandOutcome(command, context, outcome))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The footer shows a row command only on its own pane (its key does nothing elsewhere)."""
        if action == "command" and parameters and parameters[0] in self.commands:
            scope = self.commands.get(str(parameters[0])).scope
            return scope is None or scope == self.active
        return True

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """The palette lists the registry's commands (and Textual's screenshot), nothing else."""
        context = self.command_context()
        for command in self.commands:
            if command.applies(context):
                yield SystemCommand(command.title, command.help, lambda c=command: self.run_command(c.id))
        yield SystemCommand("Screenshot", "Save an SVG screenshot of the screen", lambda: self.deliver_screenshot())

    def show_help(self) -> None:
        keys = {command.id: self.commands.keys_of(command, self.keymap) for command in self.commands}
        self.push_screen(HelpScreen(list(self.commands), keys, read_only=self.read_only))

    def toggle_pause(self) -> None:
        if self.paused_at is None:
            self.paused_at = self.clock()
            self._timer.pause()
            view = self._view or self._make_view()
            self._show_header(view)
        else:
            self.paused_at = None
            self._timer.resume()
            self.render_now()

    def set_refresh(self, seconds: float) -> None:
        self.refresh_every = seconds
        self._timer.stop()
        self._timer = self.set_interval(seconds, self._tick, name="refresh", pause=self.paused_at is not None)
        self.notify(f"Redrawing every {format_duration(seconds)}", timeout=3)
        self.render_now()

    def step_refresh(self, step: int) -> None:
        choices = sorted({*REFRESH_CHOICES, self.refresh_every})
        index = max(0, min(len(choices) - 1, choices.index(self.refresh_every) + step))
        self.set_refresh(choices[index])

    def switch_theme(self, name: str) -> None:
        self.theme = name
