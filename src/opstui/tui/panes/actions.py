"""The actions pane: recent runs, refusals and declines from the audit log (this opstui's and every other's),
this opstui's runs live, and the output of the one under the cursor, streaming while it runs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.containers import VerticalScroll

from opstui.model import Level, Snapshot
from opstui.tui.cells import STALE, Cell, Lines, mark, status_style
from opstui.tui.panes.base import PaneState, TablePane, View
from opstui.units import format_duration

if TYPE_CHECKING:
    from opstui.actions import Actions, AuditEntry, Run

SHOWN = 30
"""Audit entries listed; `opstui audit` has them all."""
_RESULT_STYLE = {
    "running": "$primary bold",
    "ok": "$status-ok",
    "failed": "$status-critical",
    "timeout": "$status-critical",
    "interrupted": "$status-warning",
    "refused": STALE,
    "cancelled": STALE,
}


@dataclass(frozen=True, slots=True)
class RunRow:
    """One line of the pane: an audit entry, with this opstui's live run when it is one of ours."""

    key: str
    entry: AuditEntry | None
    run: Run | None

    @property
    def result(self) -> str:
        if self.run is not None:
            return self.run.result.result if self.run.result is not None else "running"
        assert self.entry is not None
        return self.entry.result


def took(row: RunRow, now: float) -> float | None:
    if row.run is not None:
        return row.run.result.duration if row.run.result is not None else now - row.run.started_at
    return row.entry.duration if row.entry is not None else None


class ActionsPane(TablePane):
    pane_id = "actions"
    title = "Actions"
    tab_label = "Runs"
    nothing_watched = (
        "No recovery actions: the built-ins come with the processes, Redis queues and locks the config watches; "
        "define your own under [actions] (config.example.toml)."
    )
    columns = (
        ("when", "When"),
        ("result", "Result"),
        ("action", "Action"),
        ("took", "Took"),
        ("who", "Who"),
    )

    def __init__(self, actions: Actions | None) -> None:
        super().__init__()
        self.actions = actions
        self.entries: list[AuditEntry] = []
        """The latest audit entries, newest first; read off the event loop by the app."""
        self.show_newest = False
        """Put the cursor on the newest row at the next draw (a run this TUI just started)."""
        self.output_title = Lines(classes="log-title")
        self.output = Lines(classes="log")
        self.output_scroll = VerticalScroll(classes="log-scroll")

    def compose_body(self) -> ComposeResult:
        yield self.table
        yield self.output_title
        with self.output_scroll:
            yield self.output

    def rows(self) -> list[RunRow]:
        """This opstui's runs not yet read back from the audit log, then the audit log, newest first."""
        live = {run.audit_id: run for run in self.actions.runs} if self.actions is not None else {}
        listed = {entry.id for entry in self.entries}
        rows = [RunRow(f"audit-{i}", None, run) for i, run in live.items() if i not in listed]
        rows.sort(key=lambda row: -row.run.started_at if row.run is not None else 0.0)
        rows += [RunRow(f"audit-{e.id}", e, live.get(e.id)) for e in self.entries[:SHOWN]]
        return rows

    def items(self, snapshot: Snapshot) -> Iterable[Any]:
        return self.rows()

    def source_names(self, snapshot: Snapshot) -> set[str]:
        return set()  # runs come from people, not from a source

    def state(self, view: View) -> PaneState:
        rows = self.rows()
        if not rows:
            return PaneState(None)
        finished = [row for row in rows if row.result not in ("running", "refused", "cancelled")]
        failed = bool(finished) and finished[0].result in ("failed", "timeout")
        return PaneState(Level.WARNING if failed else Level.OK)

    def failures(self, statuses: Sequence[Any], view: View) -> list[list[Cell]]:
        if self.actions is None or not self.actions.all():
            return [[(self.nothing_watched, STALE)]]
        if not self.rows():
            keys = ", ".join(f"{a.key} {a.name}" for a in self.actions.all() if a.key)
            return [[(f"Nothing run yet. On a row, press a key ({keys}) or ctrl+p for the rest.", STALE)]]
        return []

    def cells(self, item: Any, view: View) -> Sequence[Cell]:
        row: RunRow = item
        entry, run = row.entry, row.run
        at = run.started_at if run is not None else entry.at if entry is not None else view.now
        name = run.name if run is not None else entry.action if entry is not None else "?"
        target = (
            run.plan.target.key
            if run is not None and run.plan.target is not None
            else entry.target
            if entry is not None
            else None
        )
        who = str(run.plan.actor) if run is not None else entry.actor if entry is not None else ""
        seconds = took(row, view.now)
        result = row.result
        symbol = {"ok": mark(Level.OK), "failed": mark(Level.CRITICAL), "timeout": mark(Level.CRITICAL)}
        return (
            (view.clock(at), STALE),
            (f"{symbol.get(result, '…' if result == 'running' else '·')} {result}", _RESULT_STYLE.get(result, "")),
            (name + (f" {target}" if target else ""), "bold" if result == "running" else ""),
            ("-" if seconds is None else _took(seconds), STALE),
            (who, STALE),
        )

    def show_body(self, view: View) -> None:
        super().show_body(view)
        if self.show_newest and self.table.row_count:
            self.show_newest = False
            self.table.move_cursor(row=0, scroll=False)
        selected = self.selected
        if not isinstance(selected, RunRow):
            self.output_title.show([])
            self.output.show([])
            return
        self.output_title.show([self._title(selected, view)])
        self.output.show(self._output(selected))
        if selected.result == "running":
            self.output_scroll.scroll_end(animate=False)

    def _title(self, row: RunRow, view: View) -> list[Cell]:
        if row.run is not None:
            name, summary = row.run.name, row.run.result.summary if row.run.result is not None else "running"
        else:
            assert row.entry is not None
            name, summary = row.entry.action, row.entry.result + (f": {row.entry.reason}" if row.entry.reason else "")
        style = status_style(Level.CRITICAL) if row.result in ("failed", "timeout") else ""
        return [(f"{name}: ", "bold"), (summary, style)]

    def _output(self, row: RunRow) -> list[list[Cell]]:
        shown = row.run.plan.shown if row.run is not None else row.entry.args if row.entry is not None else ()
        lines: list[list[Cell]] = [[(line, "$text-muted")] for line in shown]
        if row.run is not None:
            if row.run.dropped:
                lines.append([(f"({row.run.dropped} earlier lines not kept)", STALE)])
            styles = {"out": "", "err": "$status-warning", "info": "$primary"}
            lines += [[(line.text, styles[line.stream])] for line in row.run.lines]
        elif row.entry is not None:
            lines += [[(line, "$status-warning" if line.startswith("! ") else "")] for line in row.entry.output]
        return lines


def _took(seconds: float) -> str:
    return format_duration(seconds) if seconds >= 1 else f"{seconds * 1000:.0f}ms"
