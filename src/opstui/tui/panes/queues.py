"""The queues pane: depth with its trend, growth per minute, and the parts where the queue kind has them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from opstui.model import QUEUE_DEPTH, Level, QueueInfo, Snapshot, series_key
from opstui.tui.cells import STALE, Cell, level_style, mark, trend
from opstui.tui.panes.base import TablePane, View, judged, judged_findings

TREND_WIDTH = 10


class QueuesPane(TablePane):
    pane_id = "queues"
    title = "Queues"
    tab_label = "Queues"
    shows = frozenset({"queues"})
    nothing_watched = "No queues are watched: add a Redis server with its queues (or a SQL queue) to the config."
    columns = (
        ("name", "Queue"),
        ("kind", "Kind"),
        ("depth", "Depth"),
        ("trend", "Trend"),
        ("growth", "Growth"),
        ("parts", "Parts"),
    )

    def items(self, snapshot: Snapshot) -> Iterable[QueueInfo]:
        return snapshot.queues

    def level_of(self, item: Any, view: View) -> Level:
        return judged(view, queues=(item,))

    def cells(self, item: Any, view: View) -> Sequence[Cell]:
        q: QueueInfo = item
        stale = view.stale(q)
        level = self.level_of(q, view)
        style = level_style(level, stale=stale)
        history = view.snapshot.values(series_key(QUEUE_DEPTH, q.key))
        ceiling = max((t for t in (q.warn, q.crit) if t is not None), default=None)
        growth = "-" if q.growth_per_min is None else f"{q.growth_per_min:+.1f}/min"
        growing = q.growth_per_min is not None and q.growth_per_min > 0 and level is not Level.OK
        depth = "?" if q.depth is None else str(q.depth)  # unknown (see Parts), never "None"
        return (
            (q.name, level_style(level, stale=stale, strong=True)),
            (q.kind, STALE if stale else ""),
            (depth if level is Level.OK else f"{mark(level)} {depth}", style),
            (trend(history, TREND_WIDTH, top=ceiling), style or "$primary"),
            (growth, style if growing or stale else ""),
            (_parts(q), level_style(Level.CRITICAL, stale=stale) if q.error else (STALE if stale else "")),
        )

    def notes(self, view: View) -> list[list[Cell]]:
        lines: list[list[Cell]] = []
        for q in view.snapshot.queues:
            if q.error:
                continue  # the Parts column already says what is wrong
            for finding in judged_findings(view, queues=(q,)):
                lines.append([(f"{mark(finding.level)} {finding.summary}", level_style(finding.level))])
        return lines


def _parts(queue: QueueInfo) -> str:
    if queue.error:
        return queue.error
    shown = [f"{name} {count}" for name, count in queue.parts.items() if count or name == "failed"]
    if queue.paused:
        shown.insert(0, "PAUSED")
    return ", ".join(shown) or "-"
