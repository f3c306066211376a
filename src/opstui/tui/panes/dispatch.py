"""The dispatch pane: the latest report run, processed vs sent vs failed, and any mismatch in plain words."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from opstui.model import DispatchInfo, Level, Snapshot
from opstui.tui.cells import STALE, Cell, level_style, mark
from opstui.tui.panes.base import TablePane, View, held, judged


def mismatch_sentence(d: DispatchInfo) -> str:
    """The mismatch as a person would say it."""
    missing = d.processed - d.sent - d.failed
    parts = [f"{d.name}: processed {d.processed}, sent {d.sent}, failed {d.failed}"]
    if missing > 0:
        parts.append(f"{missing} unaccounted for (neither sent nor failed)")
    elif missing < 0:
        parts.append(f"{-missing} more sent or failed than processed")
    if d.failed:
        parts.append(f"{d.failed} failed to send")
    return " · ".join(parts)


class DispatchPane(TablePane):
    pane_id = "dispatch"
    title = "Dispatch"
    tab_label = "Dispatch"
    shows = frozenset({"dispatch"})
    nothing_watched = "No report dispatch is watched: add a dispatch log, query or counters to the config."
    columns = (
        ("name", "Report"),
        ("processed", "Processed"),
        ("sent", "Sent"),
        ("failed", "Failed"),
        ("ran", "Ran"),
        ("verdict", "Verdict"),
    )

    def items(self, snapshot: Snapshot) -> Iterable[DispatchInfo]:
        return snapshot.dispatch

    def level_of(self, item: Any, view: View) -> Level:
        return judged(view, dispatch=(item,))

    def cells(self, item: Any, view: View) -> Sequence[Cell]:
        d: DispatchInfo = item
        stale = view.stale(d)
        level = self.level_of(d, view)
        style = level_style(level, stale=stale)
        plain = STALE if stale else ""
        return (
            (d.name, level_style(level, stale=stale, strong=True)),
            (str(d.processed), plain),
            (str(d.sent), style if d.sent != d.processed else plain),
            (str(d.failed), style if d.failed else plain),
            (view.ago(d.run_started_at or d.last_event_at), plain),
            self.verdict(d, view),
        )

    def verdict(self, d: DispatchInfo, view: View) -> Cell:
        stale = view.stale(d)
        if held(view, dispatch=(d,)):
            return ("… sending", STALE)
        level = self.level_of(d, view)
        return (
            f"{mark(level)} MISMATCH" if d.mismatch else f"{mark(Level.OK)} all sent",
            level_style(level, stale=stale, strong=True) or (STALE if stale else "$status-ok"),
        )

    def notes(self, view: View) -> list[list[Cell]]:
        lines: list[list[Cell]] = []
        for d in view.snapshot.dispatch:
            if d.mismatch and not held(view, dispatch=(d,)):
                lines.append([(mismatch_sentence(d), level_style(judged(view, dispatch=(d,))))])
            if d.skipped_lines:
                plural = "s were" if d.skipped_lines > 1 else " was"
                lines.append([(f"{d.name}: {d.skipped_lines} log line{plural} not JSON and skipped", STALE)])
        return lines
