"""The dashboard's panes; `OpsApp.panes` gives their order (keys 1-9, tab), `screens.COLUMNS` their place."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from opstui.model import Snapshot
from opstui.tui.panes.actions import ActionsPane
from opstui.tui.panes.activity import ActivityPane
from opstui.tui.panes.alerts import AlertsPane
from opstui.tui.panes.base import Pane, PaneState, TablePane, View
from opstui.tui.panes.dispatch import DispatchPane
from opstui.tui.panes.health import HealthPane
from opstui.tui.panes.locks import LocksPane
from opstui.tui.panes.memory import MemoryPane
from opstui.tui.panes.processes import ProcessesPane
from opstui.tui.panes.queues import QueuesPane

__all__ = [
    "ActionsPane",
    "ActivityPane",
    "AlertsPane",
    "DispatchPane",
    "HealthPane",
    "LocksPane",
    "MemoryPane",
    "Pane",
    "PaneState",
    "ProcessesPane",
    "QueuesPane",
    "TablePane",
    "View",
    "assign_sources",
]


def assign_sources(
    snapshot: Snapshot, panes: Iterable[Pane], remembered: Mapping[str, frozenset[str]]
) -> dict[str, frozenset[str]]:
    """Which pane shows which source's freshness and errors.

    A pane shows the sources of the items it shows, and keeps showing them after they fail (they are
    remembered from earlier snapshots: a failed source may have no items left). A source that never
    produced anything is placed by what it provides (its config's queues, locks ...); the alerts pane's
    source list shows every source.
    """
    assigned: dict[str, set[str]] = {}
    for pane in panes:
        names = pane.source_names(snapshot) | set(remembered.get(pane.pane_id, ()))
        names |= {s.name for s in snapshot.sources.values() if s.provides & pane.shows}
        assigned[pane.pane_id] = {n for n in names if n in snapshot.sources}
    return {pane_id: frozenset(names) for pane_id, names in assigned.items()}
