"""Restarts as opstui observes them: a running total that never resets, the last hour's count, the crash-loop sign.

Every process source feeds the same bookkeeping. A manager's own counter (PM2's restart_time, systemd's NRestarts,
Docker's RestartCount) starts the total and wins when it went up by more than one between two looks; a new start
time of the main process (or a new PID) counts as one restart whether or not the manager counted it, because
systemd resets NRestarts on a manual restart and a plain process has no counter at all.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field

HOUR = 3600.0
CRASH_LOOP_RESTARTS = 3
CRASH_LOOP_WINDOW = 300.0
"""A process restarted CRASH_LOOP_RESTARTS times within this many seconds is crash-looping."""
_PASSING_STATES = frozenset({"online", "starting", "restarting", "stopped", "exited", "missing"})
"""States a crash loop passes through; a final verdict (errored, failed, dead) is shown as it is."""


@dataclass(slots=True)
class _Seen:
    total: int
    counter: int | None
    started: Hashable | None
    restarts: deque[tuple[float, int]] = field(default_factory=deque)
    """(time, how many restarts were seen at that time), oldest first, the last hour only."""


class RestartLog:
    """Restart bookkeeping for the processes of one source, by their row key."""

    def __init__(self) -> None:
        self._seen: dict[str, _Seen] = {}

    def observe(self, key: str, now: float, *, counter: int | None = None, started: Hashable | None = None) -> int:
        """Record one look at a process and return its restart total so far.

        `counter` is the manager's own restart count, `started` anything that changes when the main process is
        replaced (its start time, or PID and create time). None means "not known at this look" (e.g. the
        process is down), which counts nothing and keeps what was known before.
        """
        seen = self._seen.get(key)
        if seen is None:
            self._seen[key] = _Seen(total=counter or 0, counter=counter, started=started)
            return counter or 0
        restarts = 0
        if counter is not None and seen.counter is not None and counter > seen.counter:
            restarts = counter - seen.counter
        elif started is not None and seen.started is not None and started != seen.started:
            restarts = 1
        if counter is not None:
            seen.counter = counter
        if started is not None:
            seen.started = started
        if restarts:
            seen.total += restarts
            seen.restarts.append((now, restarts))
        while seen.restarts and seen.restarts[0][0] < now - HOUR:
            seen.restarts.popleft()
        return seen.total

    def last_hour(self, key: str, now: float) -> int:
        return self._within(key, now, HOUR)

    def crash_looping(self, key: str, now: float) -> bool:
        return self._within(key, now, CRASH_LOOP_WINDOW) >= CRASH_LOOP_RESTARTS

    def status(self, key: str, now: float, status: str) -> str:
        """`status`, or "crash-loop" when the process keeps restarting and its manager has not given up on it."""
        return "crash-loop" if status in _PASSING_STATES and self.crash_looping(key, now) else status

    def _within(self, key: str, now: float, window: float) -> int:
        seen = self._seen.get(key)
        if seen is None:
            return 0
        return sum(count for t, count in seen.restarts if t >= now - window)

    def forget_others(self, keys: set[str]) -> None:
        """Drop what is known about processes that are no longer listed (deleted from PM2, removed containers)."""
        for key in [k for k in self._seen if k not in keys]:
            del self._seen[key]
