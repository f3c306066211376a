"""The facts opstui knows, as immutable values: what sources produce and what every face reads.

A source returns `Facts` (only the sections it knows about); the engine merges the last good facts of every
source with each source's status into one `Snapshot`, which the TUI, the rules, the notifier and `opstui check`
all read. Nothing here does I/O.
"""

from __future__ import annotations

import bisect
import dataclasses
import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


class Level(enum.IntEnum):
    """How bad something is; ordered so `max()` gives the worst."""

    OK = 0
    WARNING = 1
    CRITICAL = 2

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class SourceStatus:
    """How a source's last collection went, and how old its last good value is."""

    name: str
    kind: str
    ok: bool
    checked_at: float | None = None
    last_ok_at: float | None = None
    error: str | None = None
    duration_ms: float | None = None
    detail: str | None = None
    """How the source read its system when that matters, e.g. `pm2 rpc.sock` or `pm2 jlist (fallback)`."""
    provides: frozenset[str] = frozenset()
    """The `Facts` sections the source fills (`queues`, `locks` ...), known before its first good read: a
    server that never answered is still shown, with its error, where its queues and locks would be."""

    def age(self, now: float) -> float | None:
        """Seconds since the last good value, or None if there never was one."""
        return None if self.last_ok_at is None else max(0.0, now - self.last_ok_at)


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    key: str
    """Stable row key, e.g. `pm2:api` or `systemd:bot.service`."""
    name: str
    manager: str
    """pm2, systemd, docker, process, or host (a top process seen by the host source)."""
    status: str
    """online, stopped, errored, crash-loop, starting, missing, ..."""
    source: str
    pid: int | None = None
    started_at: float | None = None
    restarts_total: int | None = None
    restarts_last_hour: int | None = None
    rss_bytes: int | None = None
    cpu_percent: float | None = None
    log_files: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class QueueInfo:
    key: str
    name: str
    kind: str
    """list, zset, stream, bullmq, bull, rq, celery, sidekiq, sql."""
    depth: int | None
    """Jobs waiting; None when it cannot be known (see `error`), e.g. a stream whose lag Redis does not report."""
    source: str
    parts: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    """waiting / active / delayed / failed / pending / lag ... where the kind has them."""
    paused: bool | None = None
    growth_per_min: float | None = None
    warn: int | None = None
    crit: int | None = None
    error: str | None = None
    """A per-queue problem (e.g. key of the wrong type) while the rest of its server read fine."""


@dataclass(frozen=True, slots=True)
class TopProcess:
    pid: int
    name: str
    rss_bytes: int
    cpu_percent: float | None = None


@dataclass(frozen=True, slots=True)
class HostMemory:
    total_bytes: int
    available_bytes: int
    used_percent: float
    swap_total_bytes: int
    swap_used_percent: float
    source: str
    top: tuple[TopProcess, ...] = ()
    load_1m: float | None = None
    cpu_count: int | None = None

    @property
    def key(self) -> str:
        return "host"


@dataclass(frozen=True, slots=True)
class RedisMemory:
    name: str
    used_bytes: int
    source: str
    max_bytes: int | None = None
    """`maxmemory`; None when Redis has no limit (0)."""

    @property
    def key(self) -> str:
        return self.name

    @property
    def used_percent(self) -> float | None:
        return None if not self.max_bytes else 100.0 * self.used_bytes / self.max_bytes


@dataclass(frozen=True, slots=True)
class MemoryInfo:
    host: HostMemory | None = None
    redis: tuple[RedisMemory, ...] = ()


class LockState(enum.StrEnum):
    HELD = "held"
    FREE = "free"
    STALE = "stale"
    """Expired but still present: the holder died without releasing it."""
    UNEXPECTED = "unexpected"
    """Held by an instance other than the one expected."""
    UNKNOWN = "unknown"
    """Could not be read (see the lock's `error`), e.g. its table or column is missing."""


@dataclass(frozen=True, slots=True)
class LockInfo:
    key: str
    name: str
    state: LockState
    source: str
    holder: str | None = None
    expires_at: float | None = None
    since: float | None = None
    updated_at: float | None = None
    expected_holder: str | None = None
    error: str | None = None
    """A per-lock problem (missing table, key of the wrong type) while the rest of its source read fine."""

    @property
    def held(self) -> bool | None:
        """Whether someone holds it now (an unexpected holder too; a stale lock's holder is gone); None: unknown."""
        return None if self.state is LockState.UNKNOWN else self.state in (LockState.HELD, LockState.UNEXPECTED)


@dataclass(frozen=True, slots=True)
class DispatchInfo:
    """The latest report run: what was processed and what actually reached its destination."""

    key: str
    name: str
    source: str
    processed: int
    sent: int
    failed: int
    run_started_at: float | None = None
    last_event_at: float | None = None
    skipped_lines: int = 0
    error: str | None = None
    """Why the counts could not be read (they are then 0), while the rest of the source read fine."""

    @property
    def mismatch(self) -> bool:
        return self.processed != self.sent + self.failed or self.failed > 0


@dataclass(frozen=True, slots=True)
class HealthComponent:
    name: str
    ok: bool
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class HealthInfo:
    key: str
    name: str
    url: str
    ok: bool
    source: str
    status_code: int | None = None
    latency_ms: float | None = None
    overall: str | None = None
    components: tuple[HealthComponent, ...] = ()
    error: str | None = None

    @property
    def failing_components(self) -> tuple[HealthComponent, ...]:
        return tuple(c for c in self.components if not c.ok)


@dataclass(frozen=True, slots=True)
class ActivityInfo:
    """When the system last did its job: the silent failure no process monitor sees."""

    key: str
    name: str
    source: str
    last_at: float | None
    max_age: float | None = None
    detail: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class LogTail:
    key: str
    name: str
    source: str
    path: str
    lines: tuple[str, ...] = ()
    """The latest error lines, oldest first, secrets already redacted."""


@dataclass(frozen=True, slots=True)
class CheckInfo:
    """A yes/no fact with a level: a backup's freshness, a required env var's presence."""

    key: str
    name: str
    kind: str
    level: Level
    source: str
    detail: str | None = None
    value: float | None = None
    """The figure behind the check when it has one (a Prometheus metric's value), recorded in history."""


@dataclass(frozen=True, slots=True)
class AlertInfo:
    key: str
    rule: str
    level: Level
    state: str
    """pending, firing, resolved, silenced (firing, but muted by a silence or a maintenance window)."""
    summary: str
    since: float | None = None
    """When it started to be pending or firing; for a resolved alert, when it resolved."""
    detail: str | None = None
    subject: str | None = None
    """The name of what it is about (a process, queue, lock, source ...), which silences match on."""
    source: str | None = None
    """The source whose facts it judged."""
    muted_by: str | None = None
    """Why a silenced alert sends nothing: "silence 3 until 14:00 (deploy)", "maintenance nightly"."""
    cause: str | None = None
    """The key of the alert it is folded under (a Redis or PostgreSQL outage), if any."""
    flapping: bool = False


@dataclass(frozen=True, slots=True)
class Facts:
    """What one collection by one source found; a source fills only the sections it knows."""

    processes: tuple[ProcessInfo, ...] = ()
    queues: tuple[QueueInfo, ...] = ()
    host: HostMemory | None = None
    redis_memory: tuple[RedisMemory, ...] = ()
    locks: tuple[LockInfo, ...] = ()
    dispatch: tuple[DispatchInfo, ...] = ()
    health: tuple[HealthInfo, ...] = ()
    activity: tuple[ActivityInfo, ...] = ()
    logs: tuple[LogTail, ...] = ()
    checks: tuple[CheckInfo, ...] = ()


@dataclass(frozen=True, slots=True)
class Metric:
    """A figure declared once, so history, sparklines, trends and the metrics endpoint derive from it."""

    name: str
    attr: str
    unit: str
    help: str


QUEUE_DEPTH = Metric("queue_depth", "depth", "jobs", "Jobs waiting in the queue")

METRICS: Mapping[type, tuple[Metric, ...]] = MappingProxyType(
    {
        HostMemory: (
            Metric("host_memory_used_percent", "used_percent", "percent", "Host memory in use"),
            Metric("host_memory_available_bytes", "available_bytes", "bytes", "Host memory available"),
            Metric("host_swap_used_percent", "swap_used_percent", "percent", "Host swap in use"),
            Metric("host_load_1m", "load_1m", "", "Host load average over one minute"),
        ),
        ProcessInfo: (
            Metric("process_rss_bytes", "rss_bytes", "bytes", "Resident memory of the process"),
            Metric("process_cpu_percent", "cpu_percent", "percent", "CPU use of the process"),
            Metric("process_restarts_total", "restarts_total", "", "Restarts of the process counted so far"),
            Metric("process_restarts_last_hour", "restarts_last_hour", "", "Restarts of the process in the last hour"),
        ),
        QueueInfo: (
            QUEUE_DEPTH,
            Metric("queue_growth_per_minute", "growth_per_min", "jobs/min", "How fast the queue grows (or shrinks)"),
        ),
        RedisMemory: (Metric("redis_used_memory_bytes", "used_bytes", "bytes", "Memory used by Redis"),),
        HealthInfo: (
            Metric("health_up", "ok", "", "1 while the health endpoint answers healthy, 0 while it fails"),
            Metric("health_latency_ms", "latency_ms", "ms", "Latency of the health endpoint"),
        ),
        LockInfo: (
            Metric("lock_held", "held", "", "1 while someone holds the lock, 0 while it is free or stale"),
            Metric("lock_expires_timestamp_seconds", "expires_at", "Unix time", "When the lock expires"),
        ),
        ActivityInfo: (
            Metric("activity_last_timestamp_seconds", "last_at", "Unix time", "When the system last did its job"),
        ),
        DispatchInfo: (
            Metric("dispatch_processed", "processed", "", "Items processed by the latest report run"),
            Metric("dispatch_sent", "sent", "", "Items delivered by the latest report run"),
            Metric("dispatch_failed", "failed", "", "Items whose delivery failed in the latest report run"),
        ),
        CheckInfo: (Metric("check_value", "value", "", "The value behind a check, e.g. a Prometheus metric"),),
    }
)


def series_key(metric: Metric, item_key: str) -> str:
    """The history series of one metric of one item, e.g. `queue_depth:redis main/incoming`."""
    return f"{metric.name}:{item_key}"


def iter_metric_values(facts: Facts) -> Iterator[tuple[Metric, Any, float]]:
    """Every declared figure in `facts` that has a value: (metric, item, value); a yes/no figure is 1 or 0."""
    for section in dataclasses.fields(Facts):
        value = getattr(facts, section.name)
        for item in value if isinstance(value, tuple) else (value,):
            for metric in METRICS.get(type(item), ()):
                figure = getattr(item, metric.attr)
                if figure is not None:
                    yield metric, item, float(figure)


Series = tuple[tuple[float, float], ...]
"""(time, value) points, oldest first."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything opstui knows at `taken_at`; immutable, so any face may keep and compare it."""

    taken_at: float
    instance: str
    sources: Mapping[str, SourceStatus]
    processes: tuple[ProcessInfo, ...] = ()
    queues: tuple[QueueInfo, ...] = ()
    memory: MemoryInfo = field(default_factory=MemoryInfo)
    locks: tuple[LockInfo, ...] = ()
    dispatch: tuple[DispatchInfo, ...] = ()
    health: tuple[HealthInfo, ...] = ()
    activity: tuple[ActivityInfo, ...] = ()
    logs: tuple[LogTail, ...] = ()
    checks: tuple[CheckInfo, ...] = ()
    alerts: tuple[AlertInfo, ...] = ()
    series: Mapping[str, Series] = field(default_factory=lambda: MappingProxyType({}))
    sequence: int = 0
    """Increases with every snapshot the engine publishes; equal sequence means nothing changed."""

    def values(self, series_key: str) -> list[float]:
        """The values of one history series, oldest first (for sparklines)."""
        return [value for _, value in self.series.get(series_key, ())]

    def source_of(self, item: Any) -> SourceStatus | None:
        return self.sources.get(item.source)

    def is_stale(self, item: Any) -> bool:
        """True when the source behind `item` failed its last collection (the item is its last good value)."""
        status = self.sources.get(item.source)
        return status is not None and not status.ok

    def replace(self, **changes: Any) -> Snapshot:
        return dataclasses.replace(self, **changes)


def _time_of(point: tuple[float, float]) -> float:
    return point[0]


def growth_per_minute(points: Series, *, window: float = 300.0) -> float | None:
    """Change per minute over the last `window` seconds of a series; None with fewer than two points."""
    if len(points) < 2:
        return None
    end_t, end_v = points[-1]
    # The first point within the window, by bisection: this runs for every queue on every tick.
    start = points[min(bisect.bisect_left(points, end_t - window, key=_time_of), len(points) - 1)]
    span = end_t - start[0]
    if span <= 0:
        return None
    return (end_v - start[1]) * 60.0 / span
