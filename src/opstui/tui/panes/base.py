"""What every pane is: a bordered part of the dashboard that shows its figures and how fresh they are.

The border's subtitle says when its sources last read their systems; a source that failed gets a line of
its own with its error and the age of its last good value, and the rows it produced are drawn in the stale
colour. A number is never shown as current when it is not.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widget import Widget

from opstui.alerts.rules import Observation, findings
from opstui.config.alerts import AlertsConfig
from opstui.model import Level, Snapshot, SourceStatus
from opstui.tui.cells import STALE, Cell, KeyedTable, Lines, mark, status_style
from opstui.units import format_age

JUST_NOW = 10.0


@dataclass(frozen=True, slots=True)
class View:
    """One render: the snapshot, the time now (from the app's clock), and which pane shows which source."""

    snapshot: Snapshot
    now: float
    tz: tzinfo
    sources: Mapping[str, frozenset[str]]
    """Pane id -> names of the sources whose freshness and errors that pane shows."""
    alerts: AlertsConfig
    """The alert rules' thresholds, so a figure is coloured exactly when the rules would call it bad."""

    def ago(self, t: float | None) -> str:
        """'4m ago', or 'never' when there is no time (never "undefined minutes ago")."""
        return "never" if t is None else f"{format_age(self.now - t)} ago"

    def read_ago(self, t: float | None) -> str:
        """When a working source last read: 'just now' for the first JUST_NOW seconds, then '20s ago', '3m ago'.

        Seconds ticking on every pane would redraw the whole screen on every refresh and tell nobody
        anything; a source that is late or failing shows its age, and the header shows the clock.
        """
        if t is None:
            return "never"
        age = self.now - t
        if age < JUST_NOW:
            return "just now"
        return self.ago(t if age >= 60 else self.now - age // 10 * 10)

    def age(self, t: float | None) -> str:
        return "-" if t is None else format_age(self.now - t)

    def clock(self, t: float) -> str:
        return datetime.fromtimestamp(t, self.tz).strftime("%H:%M:%S")

    def stale(self, item: Any) -> bool:
        return self.snapshot.is_stale(item)


@dataclass(frozen=True, slots=True)
class PaneState:
    """How a pane is doing, for the tab bar and the header: its worst level and whether figures are stale."""

    level: Level | None
    """None: nothing is watched here."""
    stale: bool = False


def judged(view: View, **section: Any) -> Level:
    """The level the alert rules give these items right now: the screen, the alerts and `check` agree."""
    return max((o.level for o in judged_findings(view, **section)), default=Level.OK)


def judged_findings(view: View, **section: Any) -> list[Observation]:
    """What the alert rules call bad in these items right now, each with its summary.

    A finding the rules hold (a report run still sending) is no verdict yet: the alerts wait for it, so the
    screen does too, instead of showing a mismatch in red on every run.
    """
    return [o for o in _observed(view, section) if not o.hold]


def held(view: View, **section: Any) -> bool:
    """True when the rules hold their verdict on these items for now (a report run still sending)."""
    return any(o.hold for o in _observed(view, section))


def _observed(view: View, section: dict[str, Any]) -> list[Observation]:
    return findings(Snapshot(taken_at=view.now, instance="", sources={}, **section), view.alerts)


class Pane(Vertical):
    """A titled, bordered part of the dashboard. Subclasses say which items they show and how."""

    pane_id: ClassVar[str]
    title: ClassVar[str]
    tab_label: ClassVar[str]
    """The short name in the tab bar at small sizes."""
    shows: ClassVar[frozenset[str]] = frozenset()
    """The `Facts` sections shown here: a source that provides one is shown here even before it produced
    anything, so a server that never answered says so where its figures would be."""
    nothing_watched: ClassVar[str]
    """What the pane says when no source feeds it, and how to change that."""

    # Focusable itself so that moving to a pane with nothing to list still takes the keys away from the last one.
    can_focus = True

    def __init__(self) -> None:
        super().__init__(id=f"pane-{self.pane_id}", classes="pane")
        self.border_title = self.title
        self.banner = Lines(classes="banner")
        self.note = Lines(classes="note")
        self._subtitle: str | None = None

    def compose(self) -> ComposeResult:
        yield self.banner
        yield from self.compose_body()
        yield self.note

    def compose_body(self) -> ComposeResult:
        yield from ()

    @property
    def focus_target(self) -> Widget:
        """What gets the keyboard focus when the user moves to this pane: its table, unless that is empty."""
        table = next(iter(self.query(KeyedTable)), None)
        return table if table is not None and table.row_count else self

    @property
    def selected(self) -> Any:
        """The item under the cursor of the pane's table, or None (what a row command acts on)."""
        table = next(iter(self.query(KeyedTable)), None)
        key = None if table is None else table.cursor_key
        return None if table is None or key is None else table.items.get(key)

    def items(self, snapshot: Snapshot) -> Iterable[Any]:
        """The model items this pane shows; their `source` ties them to a source's status."""
        return ()

    def source_names(self, snapshot: Snapshot) -> set[str]:
        """The sources behind what this pane shows now."""
        return {item.source for item in self.items(snapshot)}

    def state(self, view: View) -> PaneState:
        """The pane's worst level; computed every render, also while the pane is hidden (for the tab bar)."""
        statuses = self.statuses(view)
        levels = [self.level_of(item, view) for item in self.items(view.snapshot)]
        stale = any(not s.ok and s.checked_at is not None for s in statuses)
        if not levels and not statuses:
            return PaneState(None)
        return PaneState(max(levels, default=Level.OK), stale)

    def level_of(self, item: Any, view: View) -> Level:
        return Level.OK

    def statuses(self, view: View) -> list[SourceStatus]:
        names = view.sources.get(self.pane_id, frozenset())
        return [s for name, s in view.snapshot.sources.items() if name in names]

    def show(self, view: View) -> None:
        """Render the freshness, then the body; only called while the pane is on screen."""
        statuses = self.statuses(view)
        self.banner.show(self.failures(statuses, view))
        subtitle = self.freshness(statuses, view)
        if subtitle != self._subtitle:  # setting a border title repaints the whole pane, even when equal
            self._subtitle = subtitle
            self.border_subtitle = subtitle
        self.show_body(view)
        self.note.show(self.notes(view))

    def show_body(self, view: View) -> None:
        """Subclasses fill their widgets from `view`."""

    def notes(self, view: View) -> Sequence[Sequence[Cell]]:
        """Plain sentences under the body: what is wrong, in words."""
        return ()

    def failures(self, statuses: Sequence[SourceStatus], view: View) -> list[list[Cell]]:
        lines: list[list[Cell]] = []
        for status in statuses:
            if status.ok or status.checked_at is None:
                continue
            last = (
                f"last good value {view.ago(status.last_ok_at)}, shown dimmed"
                if status.last_ok_at is not None
                else "no good value yet"
            )
            lines.append(
                [
                    (f"{mark(Level.CRITICAL)} {status.name}: ", status_style(Level.CRITICAL) + " bold"),
                    (status.error or "failed", status_style(Level.CRITICAL)),
                    (f" · {last}", ""),
                ]
            )
        if not statuses and not any(True for _ in self.items(view.snapshot)):
            lines.append([(self.nothing_watched, STALE)])
        return lines

    def freshness(self, statuses: Sequence[SourceStatus], view: View) -> str | None:
        if not statuses:
            return None
        if any(s.checked_at is None for s in statuses):
            return "waiting for the first read"
        failing = sum(not s.ok for s in statuses)
        if failing:
            return f"{failing} of {len(statuses)} sources failing" if len(statuses) > 1 else "source failing"
        oldest = min(s.last_ok_at for s in statuses if s.last_ok_at is not None)
        return f"read {view.read_ago(oldest)}"


class TablePane(Pane):
    """A pane whose body is one keyed table, one row per item."""

    columns: ClassVar[Sequence[tuple[str, str]]]

    def __init__(self) -> None:
        super().__init__()
        self.table = KeyedTable(self.columns, id=f"table-{self.pane_id}")

    def compose_body(self) -> ComposeResult:
        yield self.table

    def show_body(self, view: View) -> None:
        self.table.show_rows([(item.key, self.cells(item, view), item) for item in self.items(view.snapshot)])

    def cells(self, item: Any, view: View) -> Sequence[Cell]:
        raise NotImplementedError
