"""The health pane: each endpoint's status, latency and the component inside it that fails; and the checks."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from opstui.model import CheckInfo, HealthInfo, Level, Snapshot
from opstui.tui.cells import STALE, Cell, level_style, mark
from opstui.tui.panes.base import TablePane, View, judged


def problem(health: HealthInfo) -> str:
    """Which component inside the endpoint fails (`whatsapp: disconnected`), else the error, else the overall."""
    failing = health.failing_components
    if failing:
        return ", ".join(f"{c.name}: {c.detail or 'failing'}" for c in failing)
    if health.error:
        return health.error
    if not health.ok:
        return health.overall or "failing"
    return ""


class HealthPane(TablePane):
    pane_id = "health"
    title = "Health"
    tab_label = "Health"
    shows = frozenset({"health", "checks"})
    nothing_watched = "No health checks: add HTTP endpoints, backups or required env vars to the config."
    columns = (
        ("name", "Check"),
        ("status", "Status"),
        ("latency", "Latency"),
        ("detail", "Detail"),
    )

    def items(self, snapshot: Snapshot) -> Iterable[HealthInfo | CheckInfo]:
        return (*snapshot.health, *snapshot.checks)

    def level_of(self, item: Any, view: View) -> Level:
        if isinstance(item, CheckInfo):
            return item.level
        level = judged(view, health=(item,))
        # An endpoint that answers "ok" while a component inside it fails is not fine.
        return Level.WARNING if level is Level.OK and item.failing_components else level

    def cells(self, item: Any, view: View) -> Sequence[Cell]:
        stale = view.stale(item)
        level = self.level_of(item, view)
        style = level_style(level, stale=stale)
        plain = STALE if stale else ""
        name: Cell = (item.name, level_style(level, stale=stale, strong=True))
        if isinstance(item, CheckInfo):
            # The detail says what an "ok" cannot: "Telegram retrying: cannot reach ...; 3 waiting".
            detail: Cell = (item.detail or "", style or plain)
            return (name, (f"{mark(level)} {level.label}", style or "$status-ok"), ("-", plain), detail)
        h: HealthInfo = item
        code = f" {h.status_code}" if h.status_code is not None else ""
        status = f"{mark(level)} {'ok' if h.ok else 'FAIL'}{code}"
        latency = "-" if h.latency_ms is None else f"{h.latency_ms:.0f} ms"
        return (name, (status, style or "$status-ok"), (latency, plain), (problem(h), style or plain))

    def notes(self, view: View) -> list[list[Cell]]:
        """What fails, in words, under the table: the component inside an endpoint, or the check's detail."""
        lines: list[list[Cell]] = []
        for item in self.items(view.snapshot):
            level = self.level_of(item, view)
            if level is Level.OK:
                continue
            detail = item.detail if isinstance(item, CheckInfo) else problem(item)
            style = level_style(level, stale=view.stale(item))
            lines.append([(f"{mark(level)} {item.name}: ", style + " bold"), (detail or level.label, style)])
        return lines
