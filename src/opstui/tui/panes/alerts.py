"""The alerts pane: alerts firing, then pending, silenced and recently resolved; and every source's state."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from textual.app import ComposeResult

from opstui.model import AlertInfo, Level, Snapshot
from opstui.tui.cells import STALE, Cell, Lines, level_style, mark, status_style
from opstui.tui.panes.base import TablePane, View

_ORDER = {"firing": 0, "pending": 1, "silenced": 2, "resolved": 3}


class AlertsPane(TablePane):
    pane_id = "alerts"
    title = "Alerts"
    tab_label = "Alerts"
    nothing_watched = ""
    columns = (
        ("state", "State"),
        ("since", "Since"),
        ("summary", "Alert"),
    )

    def __init__(self) -> None:
        super().__init__()
        self.chosen = Lines(classes="chosen")
        self.sources = Lines(classes="sources")

    def compose_body(self) -> ComposeResult:
        yield self.table
        yield self.chosen
        yield self.sources

    def items(self, snapshot: Snapshot) -> Iterable[AlertInfo]:
        return sorted(snapshot.alerts, key=lambda a: (_ORDER.get(a.state, 9), -a.level, -(a.since or 0.0)))

    def source_names(self, snapshot: Snapshot) -> set[str]:
        return set()  # alerts come from the rules, not from a source

    def level_of(self, item: Any, view: View) -> Level:
        alert: AlertInfo = item
        return alert.level if alert.state == "firing" else Level.OK

    def cells(self, item: Any, view: View) -> Sequence[Cell]:
        a: AlertInfo = item
        firing = a.state == "firing"
        style = status_style(a.level) if firing else STALE
        summary = a.summary if not a.detail else f"{a.summary}: {a.detail}"
        return (
            (f"{_symbol(a)} {a.state}", style + (" bold" if firing else "")),
            (view.age(a.since), STALE),
            (summary, "" if firing else STALE),
        )

    def failures(self, statuses: Sequence[Any], view: View) -> list[list[Cell]]:
        # Every source's error is in the source list below, the ones no other pane shows included.
        return [] if view.snapshot.alerts else [[(f"{mark(Level.OK)} no alerts", "$status-ok")]]

    def show_body(self, view: View) -> None:
        super().show_body(view)
        self.chosen.show(in_full(self.selected, view))
        self.sources.show(source_lines(view))


def _symbol(alert: AlertInfo) -> str:
    if alert.state == "firing":
        return mark(alert.level)
    return mark(Level.OK) if alert.state == "resolved" else "…"


def in_full(alert: AlertInfo | None, view: View) -> list[list[Cell]]:
    """The alert under the cursor, wrapped to the pane: the table's Alert column is cut at any width."""
    if alert is None:
        return []
    firing = alert.state == "firing"
    style = status_style(alert.level) if firing else ""
    lines: list[list[Cell]] = [[(f"{_symbol(alert)} {alert.summary}", style + " bold")]]
    if alert.detail:
        lines.append([(alert.detail, "")])
    if alert.cause:
        cause = next((a.summary for a in view.snapshot.alerts if a.key == alert.cause), alert.cause)
        lines.append([("folded under: ", STALE), (cause, "")])
    if alert.muted_by:
        lines.append([("muted by ", STALE), (alert.muted_by, "")])
    return lines


def source_lines(view: View) -> list[list[Cell]]:
    """One line per source: ok with the age of its read, or failing with its error and last good value."""
    lines: list[list[Cell]] = [[("Sources", "bold")]]
    for status in view.snapshot.sources.values():
        if status.ok:
            lines.append(
                [
                    (f"{mark(Level.OK)} {status.name}", "$status-ok"),
                    (f"  read {view.read_ago(status.last_ok_at)}", STALE),
                ]
            )
        elif status.checked_at is None:
            lines.append([(f"… {status.name}", STALE), ("  waiting for the first read", STALE)])
        else:
            lines.append(
                [
                    (f"{mark(Level.CRITICAL)} {status.name}", level_style(Level.CRITICAL, strong=True)),
                    (f"  {status.error or 'failed'}", status_style(Level.CRITICAL)),
                    (f"  last good {view.ago(status.last_ok_at)}", STALE),
                ]
            )
    return lines if len(lines) > 1 else []
