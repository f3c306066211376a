"""The header line (who, where, when, the daemon, what is firing) and the tab bar of the small layout."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from textual.app import ComposeResult
from textual.containers import Horizontal

from opstui.daemon import DaemonPresence
from opstui.model import Level
from opstui.tui.cells import STALE, Cell, Lines, mark, status_style
from opstui.tui.panes import PaneState, View
from opstui.units import format_duration


@dataclass(frozen=True, slots=True)
class Presence:
    """What the header knows about this host's daemon."""

    daemon: DaemonPresence | None
    error: str | None = None
    """Why the state store could not be read, if it could not."""


class HeaderBar(Horizontal):
    def __init__(self) -> None:
        super().__init__(id="header")
        self.left = Lines(id="header-left")
        self.right = Lines(id="header-right")

    def compose(self) -> ComposeResult:
        yield self.left
        yield self.right

    def show(
        self,
        view: View,
        *,
        host: str,
        presence: Presence,
        refresh: float,
        paused_at: float | None,
        compact: bool,
    ) -> None:
        """`compact` (a narrow terminal) leaves out the host and the refresh interval, never the problems."""
        snapshot = view.snapshot
        firing = [a for a in snapshot.alerts if a.state == "firing"]
        failing = sum(1 for s in snapshot.sources.values() if not s.ok and s.checked_at is not None)
        left: list[Cell] = [(snapshot.instance, "bold")]
        if host != snapshot.instance and not compact:
            left.append((f" @ {host}", ""))
        left += [("  ", ""), *daemon_cells(presence, view.now), ("  ", "")]
        if firing:
            worst = max(a.level for a in firing)
            left.append(
                (
                    f"{mark(worst)} {len(firing)} alert{'s' if len(firing) > 1 else ''} firing",
                    status_style(worst) + " bold",
                )
            )
        else:
            left.append((f"{mark(Level.OK)} no alerts", status_style(Level.OK)))
        if failing:
            left.append(
                (
                    f"  {mark(Level.CRITICAL)} {failing} source{'s' if failing > 1 else ''} failing",
                    status_style(Level.CRITICAL) + " bold",
                )
            )
        self.left.show([left])
        if paused_at is not None:
            right: list[Cell] = [
                (f"⏸ PAUSED at {view.clock(paused_at)} · p resumes", status_style(Level.WARNING) + " bold")
            ]
        else:
            right = [(f"every {format_duration(refresh)}  ", STALE)] if not compact else []
            right.append((view.clock(view.now), "bold"))
        self.right.show([right])


def daemon_cells(presence: Presence, now: float) -> list[Cell]:
    daemon = presence.daemon
    if presence.error is not None:
        return [("daemon: unknown", STALE)]
    if daemon is None or not daemon.alive(now):
        return [("daemon: off", status_style(Level.WARNING))]
    role = {True: "leader", False: "standby", None: "running"}[daemon.leader]
    cells: list[Cell] = [("daemon: ", ""), (role, status_style(Level.OK))]
    if daemon.leader is False:  # several daemons share a leader, and it is another one (or unknown)
        cells.append(
            (f" · led by {daemon.led_by}", STALE)
            if daemon.led_by
            else (" · leader unknown", status_style(Level.WARNING))
        )
    return cells


class PaneBar(Lines):
    """The panes as tabs when they do not all fit: each says, by colour and symbol, how it is doing."""

    def __init__(self) -> None:
        super().__init__(id="panebar")

    def show_panes(self, panes: Sequence[tuple[str, str]], states: Mapping[str, PaneState], active: str) -> None:
        cells: list[Cell] = []
        for pane_id, label in panes:
            state = states.get(pane_id, PaneState(None))
            symbol, style = "", ""
            if state.level is not None and state.level is not Level.OK:
                symbol, style = f"{mark(state.level)} ", status_style(state.level)
            elif state.stale:
                symbol, style = "◌ ", STALE
            if pane_id == active:
                style = f"{style} reverse bold".strip()
            cells.append((f" {symbol}{label}", f"{style} @click=app.command('goto.{pane_id}')".strip()))
        self.show([cells])
