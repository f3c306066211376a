"""The daily report: what the last 24 hours looked like, at a set local time, and said plainly when one was missed.

Its figures come from per-minute samples that `SampleRecorder` keeps in the state store (the maximum of each
declared metric per minute, kept for `report.keep_samples`), the latest snapshot, and the alert log. It is
scheduled with APScheduler's cron trigger in the report's IANA timezone; its outbox key is the local date of
the run, so a DST fall-back (which makes the cron trigger fire twice) or a restart cannot send it twice.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from typing import Any
from zoneinfo import ZoneInfo

from opstui.config import Config
from opstui.errors import StateError
from opstui.model import METRICS, HostMemory, ProcessInfo, QueueInfo, Snapshot, series_key
from opstui.notify.outbox import Outbox
from opstui.notify.render import esc
from opstui.state import Store
from opstui.units import format_age, format_bytes

log = logging.getLogger("opstui.report")

DAY = 86400.0
LAST_RUN_KEY = "report.last_scheduled"


def _metric(kind: type, attr: str) -> Any:
    return next(m for m in METRICS[kind] if m.attr == attr)


RESTARTS = _metric(ProcessInfo, "restarts_total")
RSS = _metric(ProcessInfo, "rss_bytes")
DEPTH = _metric(QueueInfo, "depth")
HOST_USED = _metric(HostMemory, "used_percent")


UNWRITTEN_KEPT = 60
"""Minutes of samples kept in memory while the state database refuses them; older ones are dropped."""


class SampleRecorder:
    """An engine subscriber: the per-minute maximum of every history series, written when the minute is over.

    While the state database refuses (locked, read-only, unreachable), finished minutes wait in memory, up to
    an hour of them, and are written with the next minute that can be.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._minute: float | None = None
        self._peaks: dict[str, float] = {}
        self._unwritten: list[list[tuple[str, float, float]]] = []

    def __call__(self, snapshot: Snapshot) -> None:
        minute = math.floor(snapshot.taken_at / 60.0) * 60.0
        if self._minute is not None and minute != self._minute:
            self.flush()
        self._minute = minute
        for key, points in snapshot.series.items():
            if points and points[-1][0] >= minute:
                value = points[-1][1]
                self._peaks[key] = max(self._peaks.get(key, value), value)

    def flush(self) -> None:
        if self._minute is not None and self._peaks:
            minute = self._minute
            self._unwritten.append([(key, minute, value) for key, value in self._peaks.items()])
            del self._unwritten[:-UNWRITTEN_KEPT]
        self._peaks = {}
        if not self._unwritten:
            return
        try:
            self.store.add_samples([sample for minute in self._unwritten for sample in minute])
        except StateError as exc:
            if len(self._unwritten) == 1:
                log.warning("cannot write samples for the daily report (keeping them until it can): %s", exc)
            return
        self._unwritten = []


# ---------------------------------------------------------------------------------------------- the report


def build_report(
    snapshot: Snapshot,
    store: Store | None,
    *,
    tz: ZoneInfo,
    now: float | None = None,
    missed: list[float] | None = None,
) -> list[str]:
    """The report's lines (Telegram HTML, each self-contained) over the 24 hours before `now`."""
    now = snapshot.taken_at if now is None else now
    since = now - DAY
    local = datetime.fromtimestamp(now, UTC).astimezone(tz)
    lines = [
        f"📋 <b>Daily report · {esc(snapshot.instance)}</b>",
        f"<i>{esc(local.strftime('%Y-%m-%d %H:%M %Z'))}, the last 24 hours</i>",
    ]
    if missed:
        lines.append(f"⚠️ {esc(missed_note(missed, tz))}")

    samples = _samples(store, since)
    if store is not None and not samples:
        lines.append("<i>No samples from the last 24 hours: opstui's daemon was not running to record them.</i>")

    names = {p.key: p.name for p in snapshot.processes}
    restarts = {key: _increase(points) for key, points in _by_metric(samples, RESTARTS).items()}
    if snapshot.processes or restarts:
        lines += ["", "<b>Restarts</b>"]
        for proc in snapshot.processes:
            count = restarts.pop(proc.key, None)
            counted = "no data" if count is None else str(int(count))
            lines.append(f"• {esc(proc.name)}: {counted} (now {esc(proc.status)}, {_total(proc.restarts_total)})")
        lines += [f"• {esc(key)}: {int(count)} (gone now)" for key, count in restarts.items()]

    depth_peaks = {key: max(v for _, v in points) for key, points in _by_metric(samples, DEPTH).items()}
    if snapshot.queues:
        lines += ["", "<b>Queues</b> (now / 24 h peak)"]
        for queue in snapshot.queues:
            seen = [v for v in (depth_peaks.get(queue.key), queue.depth) if v is not None]
            shown_peak = str(int(max(seen))) if seen else "-"
            depth_now = "-" if queue.depth is None else str(queue.depth)
            lines.append(f"• {esc(queue.name)}: {depth_now} / {shown_peak}")

    host_points = _by_metric(samples, HOST_USED).get("host", [])
    rss_peaks = {key: max(v for _, v in points) for key, points in _by_metric(samples, RSS).items()}
    if host_points or snapshot.memory.host or rss_peaks:
        lines += ["", "<b>Memory peak</b>"]
        if host_points:
            t, peak = max(host_points, key=lambda p: p[1])
            when = datetime.fromtimestamp(t, UTC).astimezone(tz).strftime("%H:%M")
            lines.append(f"• host: {peak:.0f}% at {esc(when)}" + _now_percent(snapshot))
        elif snapshot.memory.host:
            lines.append(f"• host: no samples{_now_percent(snapshot)}")
        for key, peak in sorted(rss_peaks.items(), key=lambda kv: -kv[1])[:5]:
            lines.append(f"• {esc(names.get(key, key))}: {esc(format_bytes(peak))}")

    if snapshot.locks:
        lines += ["", "<b>Lock</b>"]
        for lock in snapshot.locks:
            holder = f"held by {lock.holder}" if lock.holder else "free"
            expires = ""
            if lock.expires_at:
                left = lock.expires_at - now
                expires = f", expires in {format_age(left)}" if left >= 0 else f", expired {format_age(-left)} ago"
            lines.append(f"• {esc(lock.name)}: {esc(holder)} ({esc(lock.state.value)}{esc(expires)})")

    if snapshot.dispatch:
        lines += ["", "<b>Dispatch</b> (latest run)"]
        for run in snapshot.dispatch:
            verdict = " ⚠️ mismatch" if run.mismatch else " ✓"
            lines.append(f"• {esc(run.name)}: processed {run.processed}, sent {run.sent}, failed {run.failed}{verdict}")

    lines += ["", "<b>Alerts</b>", *_alert_lines(store, since, snapshot)]
    down = [s for s in snapshot.sources.values() if not s.ok]
    if down:
        lines += ["", "<b>Cannot read now</b>"]
        lines += [f"• {esc(s.name)}: {esc(s.error or 'failing')}" for s in down]
    return lines


def missed_note(missed: list[float], tz: ZoneInfo) -> str:
    days = [datetime.fromtimestamp(t, UTC).astimezone(tz) for t in sorted(missed)]
    if len(days) == 1:
        return (
            f"The report due at {days[0]:%H:%M} on {days[0]:%Y-%m-%d} was not sent: opstui's daemon was not "
            "running then. Here it is, late."
        )
    return (
        f"{len(days)} daily reports were missed ({days[0]:%Y-%m-%d} to {days[-1]:%Y-%m-%d}) while opstui's daemon "
        "was not running. Here is the latest, late."
    )


def _alert_lines(store: Store | None, since: float, snapshot: Snapshot) -> list[str]:
    rows = (
        []
        if store is None
        else store.query(
            "SELECT at, event, level, summary FROM alert_log WHERE at >= ? ORDER BY at",
            (since,),
        )
    )
    fired = [r for r in rows if r["event"] == "fired"]
    resolved = [r for r in rows if r["event"] == "resolved"]
    firing = [a for a in snapshot.alerts if a.state in ("firing", "silenced")]
    lines = [f"fired {len(fired)}, resolved {len(resolved)}, firing now {len(firing)}"]
    lines += [f"• {'🔴' if r['level'] == 'critical' else '🟠'} {esc(r['summary'])}" for r in fired[-10:]]
    if len(fired) > 10:
        lines.append(f"<i>and {len(fired) - 10} earlier</i>")
    return lines


def _samples(store: Store | None, since: float) -> list[tuple[str, float, float]]:
    if store is None:
        return []
    rows = store.query("SELECT series, ts, value FROM samples WHERE ts >= ? ORDER BY series, ts", (since,))
    return [(row["series"], row["ts"], row["value"]) for row in rows]


def _by_metric(samples: list[tuple[str, float, float]], metric: Any) -> dict[str, list[tuple[float, float]]]:
    prefix = series_key(metric, "")
    found: dict[str, list[tuple[float, float]]] = {}
    for series, t, value in samples:
        if series.startswith(prefix):
            found.setdefault(series[len(prefix) :], []).append((t, value))
    return found


def _increase(points: list[tuple[float, float]]) -> float:
    """How much a counter went up, ignoring resets (a drop starts counting again from the new value)."""
    return sum(max(0.0, b - a) for (_, a), (_, b) in itertools.pairwise(points))


def _total(total: int | None) -> str:
    return "total unknown" if total is None else f"{total} in total"


def _now_percent(snapshot: Snapshot) -> str:
    host = snapshot.memory.host
    return "" if host is None else f" (now {host.used_percent:.0f}%)"


# ---------------------------------------------------------------------------------------------- scheduling


def scheduled_times(config: Config, since: float, until: float) -> list[float]:
    """Every scheduled report time in (since, until], in the report's timezone (a DST gap moves it forward)."""
    tz = report_timezone(config)
    hour, minute = config.report.hour_minute
    day: date = datetime.fromtimestamp(since, UTC).astimezone(tz).date() - timedelta(days=1)
    last_day = datetime.fromtimestamp(until, UTC).astimezone(tz).date()
    found = []
    while day <= last_day:
        t = datetime.combine(day, dtime(hour, minute), tzinfo=tz).timestamp()
        if since < t <= until:
            found.append(t)
        day += timedelta(days=1)
    return found


def report_timezone(config: Config) -> ZoneInfo:
    return ZoneInfo(config.report.timezone or config.general.timezone)


class DailyReport:
    """Queues the report at its time each day, and at start says which runs were missed while nobody ran."""

    def __init__(
        self,
        config: Config,
        store: Store,
        snapshot: Callable[[], Snapshot],
        *,
        on_queued: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store = store
        self.snapshot = snapshot
        self.on_queued = on_queued
        self.clock = clock
        self.tz = report_timezone(config)

    def schedule(self, scheduler: Any) -> None:
        from apscheduler.triggers.cron import CronTrigger

        hour, minute = self.config.report.hour_minute
        scheduler.add_job(
            self.run,
            CronTrigger(hour=hour, minute=minute, timezone=self.tz),
            id="daily-report",
            name="daily report",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=3600,
        )

    def catch_up(self) -> bool:
        """At start: queue a late report if one was due while the daemon was down; True if it did."""
        now = self.clock()
        last = self.store.get_meta(LAST_RUN_KEY)
        due = scheduled_times(self.config, now - 7 * DAY, now)
        if last is None or not due:
            # First start: nothing can have been missed yet; remember where the schedule stands.
            self.store.set_meta(LAST_RUN_KEY, str(due[-1] if due else now))
            return False
        missed = [t for t in due if t > float(last)]
        if not missed:
            return False
        log.warning("%s", missed_note(missed, self.tz))
        self.queue(missed[-1], missed=missed)
        return True

    def run(self) -> None:
        """The scheduled job: queue today's report."""
        now = self.clock()
        due = scheduled_times(self.config, now - DAY, now)
        self.queue(due[-1] if due else now)

    def queue(self, scheduled: float, *, missed: list[float] | None = None) -> bool:
        """Queue the report for the run scheduled at `scheduled`; False if that day's report was queued before."""
        local_day = datetime.fromtimestamp(scheduled, UTC).astimezone(self.tz).date().isoformat()
        lines = build_report(self.snapshot(), self.store, tz=self.tz, now=self.clock(), missed=missed)
        added = Outbox(self.store).add(f"report:{local_day}", "report", {"lines": lines}, now=self.clock())
        self.store.set_meta(LAST_RUN_KEY, str(scheduled))
        if added:
            log.info("daily report for %s queued", local_day)
            if self.on_queued is not None:
                self.on_queued()
        return added
