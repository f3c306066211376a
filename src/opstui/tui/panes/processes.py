"""The processes pane: status, uptime, restarts and resources of each supervised process."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from opstui.model import Level, ProcessInfo, Snapshot
from opstui.tui.cells import Cell, level_style, mark
from opstui.tui.panes.base import TablePane, View, judged
from opstui.units import format_age, format_bytes

CRASH_LOOP_RESTARTS = 3
"""Restarts within the last hour from which a process counts as crash-looping (the alert default is 3 in 10 min)."""
_RUNNING = {"online", "running", "active", "up"}


def crash_looping(process: ProcessInfo) -> bool:
    return process.status == "crash-loop" or (process.restarts_last_hour or 0) >= CRASH_LOOP_RESTARTS


class ProcessesPane(TablePane):
    pane_id = "processes"
    title = "Processes"
    tab_label = "Processes"
    shows = frozenset({"processes"})
    nothing_watched = "No processes are watched: add a PM2, systemd, Docker or process source to the config."
    # What matters at 3 a.m. first: on a narrow terminal the last columns are the ones scrolled off.
    columns = (
        ("name", "Process"),
        ("status", "Status"),
        ("restarts", "Restarts"),
        ("last_hour", "Last hour"),
        ("uptime", "Up"),
        ("rss", "Memory"),
        ("cpu", "CPU"),
        ("manager", "Manager"),
    )

    def __init__(self) -> None:
        super().__init__()
        self._cursor_placed = False

    def items(self, snapshot: Snapshot) -> Iterable[ProcessInfo]:
        return snapshot.processes

    def level_of(self, item: Any, view: View) -> Level:
        return Level.CRITICAL if crash_looping(item) else judged(view, processes=(item,))

    def cells(self, item: Any, view: View) -> Sequence[Cell]:
        p: ProcessInfo = item
        level = self.level_of(p, view)
        stale = view.stale(p)
        style = level_style(level, stale=stale)
        looping = crash_looping(p)
        uptime = format_age(view.now - p.started_at) if p.started_at and p.status in _RUNNING else "-"
        plain = style if stale else ""
        return (
            (f"{'⟳ ' if looping else ''}{p.name}", level_style(level, stale=stale, strong=True)),
            (p.status if level is Level.OK or looping else f"{mark(level)} {p.status}", style),
            (_count(p.restarts_total), style if looping else plain),
            (_count(p.restarts_last_hour), level_style(Level.CRITICAL, stale=stale, strong=True) if looping else plain),
            (uptime, plain),
            (format_bytes(p.rss_bytes), plain),
            ("-" if p.cpu_percent is None else f"{p.cpu_percent:.0f}%", plain),
            (p.manager, plain),
        )

    def show_body(self, view: View) -> None:
        super().show_body(view)
        if not self._cursor_placed and view.snapshot.processes:
            # Go to the process in the worst state the first time one is bad (at start, or when trouble begins
            # later), unless the person has moved the cursor off the first row: its errors are what Logs shows.
            worst = max(view.snapshot.processes, key=lambda p: self.level_of(p, view))
            if self.level_of(worst, view) is not Level.OK:
                self._cursor_placed = True
                if self.table.cursor_row == 0:
                    self.table.move_cursor(row=self.table.get_row_index(worst.key), scroll=False)

    def notes(self, view: View) -> list[list[Cell]]:
        lines: list[list[Cell]] = []
        for p in view.snapshot.processes:
            if crash_looping(p) and p.restarts_last_hour:
                lines.append(
                    [
                        (
                            f"⟳ {p.name} restarted {p.restarts_last_hour} times in the last hour",
                            level_style(Level.CRITICAL),
                        ),
                        (f" ({_count(p.restarts_total)} in all)" if p.restarts_total is not None else "", ""),
                    ]
                )
            elif crash_looping(p):
                lines.append([(f"⟳ {p.name} is crash-looping", level_style(Level.CRITICAL))])
        return lines


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)
