"""The lock pane: who holds the leader lock, since when, when it expires (counting down), and its state."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from opstui.model import Level, LockInfo, LockState, Snapshot
from opstui.tui.cells import STALE, Cell, level_style, mark
from opstui.tui.panes.base import TablePane, View, judged
from opstui.units import format_age, format_duration

_STATE_WORDS = {
    LockState.HELD: "held",
    LockState.FREE: "free",
    LockState.STALE: "stale",  # "Expires in" says since when: "expired 2m ago"
    LockState.UNEXPECTED: "unexpected holder",
}


def expires_in(lock: LockInfo, now: float) -> str:
    """Counts down each redraw: '4m10s'; 'expired 2m ago' once past; '-' when the lock has no expiry."""
    if lock.expires_at is None:
        return "-"
    left = lock.expires_at - now
    return format_duration(round(left)) if left >= 0 else f"expired {format_age(-left)} ago"


class LocksPane(TablePane):
    pane_id = "locks"
    title = "Lock"
    tab_label = "Lock"
    shows = frozenset({"locks"})
    nothing_watched = "No lock is watched: add a lock (a table, an advisory lock or a Redis key) to the config."
    columns = (
        ("name", "Lock"),
        ("state", "State"),
        ("holder", "Holder"),
        ("since", "Held for"),
        ("expires", "Expires in"),
    )

    def items(self, snapshot: Snapshot) -> Iterable[LockInfo]:
        return snapshot.locks

    def level_of(self, item: Any, view: View) -> Level:
        return judged(view, locks=(item,))

    def cells(self, item: Any, view: View) -> Sequence[Cell]:
        lock: LockInfo = item
        stale = view.stale(lock)
        level = self.level_of(lock, view)
        style = level_style(level, stale=stale)
        holder = lock.holder or "-"
        if lock.state is LockState.UNEXPECTED and lock.expected_holder:
            holder = f"{holder} (expected {lock.expected_holder})"
        state = _STATE_WORDS.get(lock.state, lock.state.value)
        return (
            (lock.name, level_style(level, stale=stale, strong=True)),
            (state if level is Level.OK else f"{mark(level)} {state}", style),
            (holder, style if lock.state is LockState.UNEXPECTED or stale else ""),
            (view.age(lock.since) if lock.holder else "-", STALE if stale else ""),
            (expires_in(lock, view.now), style if lock.state is LockState.STALE or stale else ""),
        )
