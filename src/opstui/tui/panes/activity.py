"""The activity and logs pane: how long since the system last did its job, and the latest error lines."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from textual.app import ComposeResult
from textual.containers import VerticalScroll

from opstui.model import ActivityInfo, Level, LogTail, ProcessInfo, Snapshot
from opstui.tui.cells import STALE, Cell, Lines, level_style, mark
from opstui.tui.panes.base import TablePane, View, judged
from opstui.units import format_duration

LOG_LINES = 30
"""Error lines kept on screen per log; the pane scrolls."""


def tails_of(process: ProcessInfo | None, logs: Sequence[LogTail]) -> list[LogTail]:
    """The error logs of one process (by its log files, else by name); every log when none is focused."""
    if process is None:
        return list(logs)
    mine = [t for t in logs if t.path in process.log_files or t.name == process.name]
    return mine


class ActivityPane(TablePane):
    pane_id = "activity"
    title = "Activity & logs"
    tab_label = "Logs"
    shows = frozenset({"activity", "logs"})
    nothing_watched = "No activity or error logs are watched: add them to the config."
    columns = (
        ("name", "Activity"),
        ("last", "Last"),
        ("limit", "Quiet limit"),
        ("detail", "Detail"),
    )

    def __init__(self, focused_process: Callable[[], ProcessInfo | None]) -> None:
        super().__init__()
        self.focused_process = focused_process
        self.log_title = Lines(classes="log-title")
        self.log_lines = Lines(classes="log")

    def compose_body(self) -> ComposeResult:
        yield self.table
        yield self.log_title
        with VerticalScroll(classes="log-scroll"):
            yield self.log_lines

    def items(self, snapshot: Snapshot) -> Iterable[ActivityInfo | LogTail]:
        return (*snapshot.activity, *snapshot.logs)

    def level_of(self, item: Any, view: View) -> Level:
        return judged(view, activity=(item,)) if isinstance(item, ActivityInfo) else Level.OK

    def show_body(self, view: View) -> None:
        self.table.show_rows([(a.key, self.cells(a, view), a) for a in view.snapshot.activity])
        process = self.focused_process()
        tails = tails_of(process, view.snapshot.logs)
        hint = "  (pick a process in Processes)"
        if process is not None and not tails:
            # A process with no error log of its own (often the first row): every log says more than nothing.
            hint = f"  (none known for {process.name}; pick one in Processes)"
            process, tails = None, list(view.snapshot.logs)
        if not view.snapshot.logs:
            # With no activity either, the pane's banner already says that nothing is watched here.
            self.log_title.show([[("No error logs are read.", STALE)]] if view.snapshot.activity else [])
        else:
            who = "every process" if process is None else process.name
            self.log_title.show([[(f"Latest errors of {who}", "bold"), (hint, STALE)]])
        lines: list[list[Cell]] = []
        for tail in tails:
            style = STALE if view.stale(tail) else ""
            if len(tails) > 1 or not process:
                lines.append([(f"── {tail.name}  {tail.path}", "$text-muted")])
            lines += [[(line, style)] for line in tail.lines[-LOG_LINES:]] or [[("no errors logged", STALE)]]
        self.log_lines.show(lines)

    def cells(self, item: Any, view: View) -> Sequence[Cell]:
        a: ActivityInfo = item
        stale = view.stale(a)
        level = self.level_of(a, view)
        style = level_style(level, stale=stale)
        last = view.ago(a.last_at)
        return (
            (a.name, level_style(level, stale=stale, strong=True)),
            (last if level is Level.OK else f"{mark(level)} {last}", style),
            # The limit the alert rule applies: the activity's own, else alerts.inactive.max_age.
            (format_duration(a.max_age or view.alerts.inactive.max_age), STALE if stale else ""),
            (a.error or a.detail or "", style if a.error else STALE if stale else ""),
        )
