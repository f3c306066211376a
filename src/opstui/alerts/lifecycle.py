"""One alert's life: ok -> pending -> firing -> resolved, counted in checks of its source, with flap detection.

An alert fires once its condition has held for its `for` duration and for `failures` consecutive checks; it
resolves after `successes` consecutive good checks. A check is one read of the source behind it (its
`checked_at`), so snapshots published for other sources' sake do not count twice.

An alert is flapping when its condition keeps changing: flap_changes times within the last flap_window checks
(fast), or flap_fires firings within flap_period (slow, e.g. a queue that backs up every few minutes). A
flapping alert is held firing, one message instead of a stream of fired/resolved pairs, and resolves only once
its condition has been good for flap_quiet.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from dataclasses import dataclass
from typing import Any, Literal

from opstui.model import Level

Phase = Literal["ok", "pending", "firing"]
Event = Literal["fired", "resolved"]


@dataclass(frozen=True, slots=True)
class Thresholds:
    for_: float = 0.0
    failures: int = 1
    successes: int = 1
    flap_window: int = 20
    flap_changes: int = 6
    flap_fires: int = 3
    flap_period: float = 3600.0
    flap_quiet: float = 600.0


@dataclass(slots=True)
class AlertState:
    """Everything remembered about one alert; persisted as JSON so a restart neither re-fires nor forgets it."""

    key: str
    rule: str
    subject: str
    level: int = int(Level.OK)
    summary: str = ""
    detail: str | None = None
    source: str | None = None
    source_kind: str | None = None
    phase: Phase = "ok"
    since: float | None = None
    """When the condition of the current pending or firing episode began to hold."""
    began_at: float | None = None
    """When the condition of the latest firing episode began (kept after it resolves, for its message)."""
    fired_at: float | None = None
    resolved_at: float | None = None
    bad_checks: int = 0
    good_checks: int = 0
    last_check: float | None = None
    recent: str = ""
    """One character per check, newest last: "1" bad, "0" good (flap detection)."""
    fires: list[float] = dataclasses.field(default_factory=list)
    """When it fired within the flap period (flap detection over minutes, not checks)."""
    good_since: float | None = None
    flapping: bool = False
    notified: bool = False
    """A firing message for this episode is in the outbox (so a resolved one is owed)."""
    notified_level: int = 0
    notified_at: float | None = None
    """When this episode's firing message was queued."""
    last_notice_at: float | None = None
    reminders: int = 0
    muted_by: str | None = None
    cause: str | None = None

    @property
    def episode(self) -> str:
        """Identifies this firing episode for good (idempotency keys), also across restarts."""
        return str(round((self.fired_at or 0.0) * 1000))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> AlertState:
        data: dict[str, Any] = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def step(state: AlertState, *, bad: bool, check: float | None, now: float, th: Thresholds) -> Event | None:
    """Fold one check's verdict into `state`; returns the transition it caused, if any.

    `check` identifies the source read the verdict is about; the same check seen again changes nothing.
    """
    if check is not None and check == state.last_check:
        return None
    state.last_check = check
    state.recent = (state.recent + ("1" if bad else "0"))[-th.flap_window :]
    changes = sum(a != b for a, b in itertools.pairwise(state.recent))
    state.fires = [t for t in state.fires if now - t < th.flap_period]
    if changes >= th.flap_changes:
        state.flapping = True

    if bad:
        state.bad_checks += 1
        state.good_checks = 0
        state.good_since = None
        if state.phase == "ok":
            state.phase = "pending"
            state.since = now
    else:
        state.good_checks += 1
        state.bad_checks = 0
        state.good_since = now if state.good_since is None else state.good_since

    if state.phase == "pending":
        ripe = bad and now - (state.since or now) >= th.for_ and state.bad_checks >= th.failures
        if ripe or (bad and state.flapping):
            state.phase = "firing"
            state.began_at = state.since
            state.fired_at = now
            state.fires.append(now)
            state.flapping = state.flapping or len(state.fires) >= th.flap_fires
            state.notified = False
            state.notified_level = 0
            state.reminders = 0
            return "fired"
        if not bad:
            state.phase = "ok"
            state.since = None
    elif state.phase == "firing" and not bad and state.good_checks >= th.successes:
        settled = not state.flapping or now - (state.good_since or now) >= th.flap_quiet
        if settled:
            state.phase = "ok"
            state.since = None
            state.flapping = False
            state.resolved_at = now
            return "resolved"
    return None


def forgettable(state: AlertState, *, now: float, keep_resolved: float, th: Thresholds) -> bool:
    """True once nothing about the alert is worth keeping: quiet, not recently resolved or fired, no bad check."""
    if state.phase != "ok" or "1" in state.recent or any(now - t < th.flap_period for t in state.fires):
        return False
    return state.resolved_at is None or now - state.resolved_at > keep_resolved
