"""What a daemon writes about itself into its host's state store, so the TUI header can say who runs and leads."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from opstui.state import Store

HEARTBEAT_KEY = "daemon"
HEARTBEAT_EVERY = 5.0


@dataclass(frozen=True, slots=True)
class DaemonPresence:
    """What the daemon last wrote about itself into the state store (the TUI header shows it)."""

    pid: int
    host: str
    instance: str
    started_at: float
    heartbeat_at: float
    leader: bool | None = None
    """Whether this daemon leads when several run (None: no high availability configured)."""
    led_by: str | None = None
    """Who leads when several run ("bot-vps-2", or "bot on vps-2"), this daemon or another; None when that is
    unknown or the daemon runs alone."""
    token: int | None = None
    """The fencing token of the lease this daemon holds while it leads."""
    listen: str | None = None
    """Where its /healthz, /readyz and /metrics answer (host:port), if anywhere."""

    def alive(self, now: float) -> bool:
        return now - self.heartbeat_at < 3 * HEARTBEAT_EVERY


def write_presence(store: Store, presence: DaemonPresence) -> None:
    store.set_meta(HEARTBEAT_KEY, json.dumps(dataclasses.asdict(presence)))


def read_presence(store: Store) -> DaemonPresence | None:
    raw = store.get_meta(HEARTBEAT_KEY)
    if raw is None:
        return None
    try:
        return DaemonPresence(**json.loads(raw))
    except (TypeError, ValueError):
        return None


def withdraw_presence(store: Store) -> None:
    store.set_meta(HEARTBEAT_KEY, "{}")
