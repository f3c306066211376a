"""Muting notifications: silences with an expiry (from the CLI, the TUI and the bot) and maintenance windows.

A muted alert is still evaluated and shown (as "silenced"); only its messages wait. If it still fires when the
silence expires or the window closes, its firing message goes out then; if it resolved meanwhile, nothing is
sent, because nobody was told it fired. Patterns are globs matched, case-insensitively, against an alert's key
(`restart_loop:pm2:worker`), its rule (`restart_loop`) and its subject (`worker`).
"""

from __future__ import annotations

import fnmatch
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from opstui.config.alerts import MaintenanceWindow
from opstui.errors import OpsError
from opstui.state import Store
from opstui.units import format_duration, parse_duration


@dataclass(frozen=True, slots=True)
class Silence:
    id: int
    pattern: str
    created_at: float
    expires_at: float
    created_by: str
    comment: str = ""

    def describe(self, tz: ZoneInfo | None = None) -> str:
        until = datetime.fromtimestamp(self.expires_at, tz or UTC).strftime("%Y-%m-%d %H:%M %Z")
        note = f" ({self.comment})" if self.comment else ""
        return f"silence {self.id} on '{self.pattern}' until {until} by {self.created_by}{note}"


def matches(pattern: str, *, key: str, rule: str, subject: str) -> bool:
    pattern = pattern.lower()
    return any(fnmatch.fnmatchcase(name.lower(), pattern) for name in (key, rule, subject))


def silence(
    store: Store,
    pattern: str,
    duration: float | str,
    *,
    by: str,
    comment: str = "",
    now: float | None = None,
) -> Silence:
    """Mute notifications of every alert matching `pattern` for `duration` ("2h", or seconds).

    The one function the CLI, the TUI and the bot call; `by` says who ("cli alice@pts/1", "telegram 111222333").
    Raises OpsError with a message fit to show the person when the pattern or duration is unusable.
    """
    pattern = pattern.strip()
    if not pattern:
        raise OpsError("say what to silence: an alert key, a rule, a name, or a glob such as 'worker*' or '*'")
    try:
        seconds = parse_duration(duration)
    except ValueError as exc:
        raise OpsError(str(exc)) from None
    if seconds <= 0:
        raise OpsError("a silence needs a duration longer than zero, e.g. '30m' or '2h'")
    now = time.time() if now is None else now
    with store.transaction() as db:
        silence_id = int(
            db.execute(
                "INSERT INTO silences (pattern, created_at, expires_at, created_by, comment) VALUES (?, ?, ?, ?, ?) "
                "RETURNING id",
                (pattern, now, now + seconds, by, comment),
            ).fetchone()[0]
        )
    return Silence(silence_id, pattern, now, now + seconds, by, comment)


def unsilence(store: Store, which: int | str, *, now: float | None = None) -> list[Silence]:
    """End silences now: one by id, or every active one with exactly this pattern; returns those ended."""
    now = time.time() if now is None else now
    ended = [
        s
        for s in active_silences(store, now=now)
        if (isinstance(which, int) and s.id == which) or (isinstance(which, str) and s.pattern == which)
    ]
    if ended:
        with store.transaction() as db:
            db.executemany("UPDATE silences SET expires_at = ? WHERE id = ?", [(now, s.id) for s in ended])
    return [Silence(s.id, s.pattern, s.created_at, now, s.created_by, s.comment) for s in ended]


def active_silences(store: Store, *, now: float | None = None) -> list[Silence]:
    now = time.time() if now is None else now
    rows = store.query(
        "SELECT id, pattern, created_at, expires_at, created_by, comment FROM silences "
        "WHERE expires_at > ? ORDER BY id",
        (now,),
    )
    return [Silence(*row) for row in rows]


class MaintenanceWindows:
    """The configured windows; `active(now)` says which are open (a crontab start plus a duration)."""

    def __init__(self, windows: list[MaintenanceWindow], *, default_timezone: str) -> None:
        from apscheduler.triggers.cron import CronTrigger

        self._windows: list[tuple[MaintenanceWindow, Any]] = [
            (w, CronTrigger.from_crontab(w.cron, timezone=ZoneInfo(w.timezone or default_timezone))) for w in windows
        ]

    def active(self, now: float) -> list[MaintenanceWindow]:
        moment = datetime.fromtimestamp(now, UTC)
        found = []
        for window, trigger in self._windows:
            # The window is open when its start (the first cron time after now - duration) is not after now.
            opened = trigger.get_next_fire_time(None, moment - timedelta(seconds=window.duration))
            if opened is not None and opened <= moment:
                found.append(window)
        return found


def describe_window(window: MaintenanceWindow) -> str:
    return f"maintenance '{window.name}' ({window.cron}, {format_duration(window.duration)})"
