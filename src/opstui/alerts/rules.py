"""The alert rules: each reads a snapshot and says, per thing it judges, whether something is wrong right now.

A rule knows nothing of time thresholds, flapping or delivery: it returns one `Observation` per process, queue,
lock, ... it judged (good ones too, so an alert can resolve), and the lifecycle decides when that becomes an
alert. The one thing a rule remembers is the restart counter per process, because "3 restarts in 10 minutes"
cannot be read off one snapshot.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from opstui.config.alerts import AlertsConfig, LevelName, RuleConfig
from opstui.model import Level, LockState, Snapshot
from opstui.redact import mask_url
from opstui.units import format_age, format_bytes, format_duration

DOWN_STATUSES = frozenset({"stopped", "errored", "missing", "failed", "dead", "exited", "inactive"})
CRASH_LOOP_STATUSES = frozenset({"crash-loop", "auto-restart"})


@dataclass(frozen=True, slots=True)
class Observation:
    """One rule's verdict on one thing in one snapshot."""

    key: str
    """The alert's identity, stable across snapshots and restarts: `restart_loop:pm2:worker`."""
    rule: str
    subject: str
    """The name of what it is about, in the user's words (silences match on it)."""
    bad: bool
    level: Level = Level.OK
    summary: str = ""
    detail: str | None = None
    source: str | None = None
    """The source whose facts were judged: while it fails, its stale facts hold the alert where it is."""
    judges_source: bool = False
    """True for the rule about the source itself, which must be judged precisely when the source fails."""
    hold: bool = False
    """No verdict this time (e.g. a report run still sending): the alert stays as it is."""


def _level(name: LevelName) -> Level:
    return Level[name.upper()]


class RestartHistory:
    """When each process restarted recently, from increases of its restart counter between observations."""

    def __init__(self, within: float) -> None:
        self.within = within
        self._last: dict[str, tuple[float, int]] = {}
        self._events: dict[str, list[tuple[float, int]]] = {}

    def observe(self, key: str, t: float, total: int) -> None:
        last = self._last.get(key)
        self._last[key] = (t, total)
        if last is None or t <= last[0]:
            return
        # A drop is a counter reset (pm2 reset, a manual systemd restart); a jump seen after a gap longer than
        # the window cannot be placed in time (the daemon was not watching), so both only set a new baseline.
        if total > last[1] and t - last[0] <= self.within:
            self._events.setdefault(key, []).append((t, total - last[1]))

    def count(self, key: str, now: float) -> int:
        events = [(t, n) for t, n in self._events.get(key, ()) if t > now - self.within]
        if events:
            self._events[key] = events
        else:
            self._events.pop(key, None)
        return sum(n for _, n in events)


@dataclass
class RuleContext:
    config: AlertsConfig
    once: bool = False
    """Judging a single snapshot (`opstui check`): no history to count restarts from."""
    restarts: RestartHistory = field(init=False)

    def __post_init__(self) -> None:
        self.restarts = RestartHistory(self.config.restart_loop.within)


RuleFunction = Callable[[Snapshot, RuleContext], Iterator[Observation]]


def source_down(snapshot: Snapshot, ctx: RuleContext) -> Iterator[Observation]:
    level = _level(ctx.config.source_down.level)
    for status in snapshot.sources.values():
        yield Observation(
            key=f"source_down:{status.name}",
            rule="source_down",
            subject=status.name,
            bad=not status.ok and status.checked_at is not None,
            level=level,
            summary=f"{status.name} cannot be read: {status.error}",
            detail=None if status.last_ok_at is None else f"last good read {_ago(snapshot, status.last_ok_at)}",
            source=status.name,
            judges_source=True,
            hold=status.checked_at is None,  # not read yet: nothing is known
        )


def process_down(snapshot: Snapshot, ctx: RuleContext) -> Iterator[Observation]:
    level = _level(ctx.config.process_down.level)
    for proc in snapshot.processes:
        yield Observation(
            key=f"process_down:{proc.key}",
            rule="process_down",
            subject=proc.name,
            bad=proc.status in DOWN_STATUSES,
            level=level,
            summary=f"{proc.name} is {proc.status}",
            detail=f"{MANAGED.get(proc.manager, proc.manager)}; {_restarts(proc.restarts_total)}",
            source=proc.source,
        )


def restart_loop(snapshot: Snapshot, ctx: RuleContext) -> Iterator[Observation]:
    cfg = ctx.config.restart_loop
    level = _level(cfg.level)
    for proc in snapshot.processes:
        status = snapshot.sources.get(proc.source)
        t = status.checked_at if status and status.checked_at else snapshot.taken_at
        if proc.restarts_total is not None:
            ctx.restarts.observe(proc.key, t, proc.restarts_total)
        recent = ctx.restarts.count(proc.key, snapshot.taken_at)
        # A source's own "crash-loop" verdict is trusted only where we cannot count (no counter, or a single
        # look), so that restarts/within in the config decide.
        looping = proc.status in CRASH_LOOP_STATUSES and (proc.restarts_total is None or ctx.once)
        if recent >= cfg.restarts:
            summary = f"{proc.name} is crash-looping: {recent} restarts in the last {format_duration(cfg.within)}"
        else:
            summary = f"{proc.name} is crash-looping ({proc.manager} says {proc.status})"
        yield Observation(
            key=f"restart_loop:{proc.key}",
            rule="restart_loop",
            subject=proc.name,
            bad=recent >= cfg.restarts or looping,
            level=level,
            summary=summary,
            detail=f"{MANAGED.get(proc.manager, proc.manager)}, now {proc.status}; {_restarts(proc.restarts_total)}",
            source=proc.source,
        )


def memory(snapshot: Snapshot, ctx: RuleContext) -> Iterator[Observation]:
    cfg = ctx.config.memory
    host = snapshot.memory.host
    if host is not None:
        level = Level.OK
        limit = cfg.host_warning
        if host.used_percent >= cfg.host_critical:
            level, limit = Level.CRITICAL, cfg.host_critical
        elif host.used_percent >= cfg.host_warning:
            level = Level.WARNING
        top = ", ".join(f"{p.name} {format_bytes(p.rss_bytes)}" for p in host.top[:3])
        yield Observation(
            key="memory:host",
            rule="memory",
            subject="host",
            bad=level is not Level.OK,
            level=level,
            summary=f"host memory at {host.used_percent:.0f}% (limit {limit:.0f}%)",
            detail=f"{format_bytes(host.available_bytes)} available" + (f"; biggest: {top}" if top else ""),
            source=host.source,
        )
    for proc in snapshot.processes:
        limit_bytes = cfg.processes.get(proc.name, cfg.process)
        if limit_bytes is None or proc.rss_bytes is None:
            continue
        yield Observation(
            key=f"memory:{proc.key}",
            rule="memory",
            subject=proc.name,
            bad=proc.rss_bytes >= limit_bytes,
            level=Level.WARNING,
            summary=f"{proc.name} uses {format_bytes(proc.rss_bytes)} (limit {format_bytes(limit_bytes)})",
            source=proc.source,
        )
    for redis in snapshot.memory.redis:
        percent = redis.used_percent
        if percent is None:
            continue
        yield Observation(
            key=f"memory:redis:{redis.key}",
            rule="memory",
            subject=redis.name,
            bad=percent >= cfg.redis_warning,
            level=Level.WARNING,
            summary=f"redis {redis.name} memory at {percent:.0f}% of its maxmemory",
            detail=f"{format_bytes(redis.used_bytes)} of {format_bytes(redis.max_bytes)}",
            source=redis.source,
        )


def queue_depth(snapshot: Snapshot, ctx: RuleContext) -> Iterator[Observation]:
    cfg = ctx.config.queue_depth
    for queue in snapshot.queues:
        own = queue.warn is not None or queue.crit is not None
        warn, crit = (queue.warn, queue.crit) if own else (cfg.warning, cfg.critical)
        level, limit = Level.OK, warn
        depth = queue.depth
        if depth is not None and crit is not None and depth >= crit:
            level, limit = Level.CRITICAL, crit
        elif depth is not None and warn is not None and depth >= warn:
            level = Level.WARNING
        if queue.error:
            # The server answered but this queue could not be read (a key of the wrong type, a forbidden command).
            level = max(level, Level.WARNING)
            summary = f"queue {queue.name} cannot be read: {queue.error}"
        else:
            summary = f"queue {queue.name} has {depth} waiting (limit {limit})"
        parts = ", ".join(f"{name} {count}" for name, count in queue.parts.items())
        yield Observation(
            key=f"queue_depth:{queue.key}",
            rule="queue_depth",
            subject=queue.name,
            bad=level is not Level.OK,
            level=level,
            summary=summary,
            detail=", ".join(x for x in (parts, "paused" if queue.paused else "") if x) or None,
            source=queue.source,
        )


def queue_growing(snapshot: Snapshot, ctx: RuleContext) -> Iterator[Observation]:
    cfg = ctx.config.queue_growing
    for queue in snapshot.queues:
        growth = queue.growth_per_min
        waiting = "?" if queue.depth is None else queue.depth
        yield Observation(
            key=f"queue_growing:{queue.key}",
            rule="queue_growing",
            subject=queue.name,
            bad=growth is not None and growth >= cfg.min_growth,
            level=_level(cfg.level),
            summary=f"queue {queue.name} keeps growing: {growth or 0:+.0f}/min, {waiting} waiting",
            source=queue.source,
            hold=growth is None,
        )


def inactive(snapshot: Snapshot, ctx: RuleContext) -> Iterator[Observation]:
    cfg = ctx.config.inactive
    for activity in snapshot.activity:
        max_age = activity.max_age or cfg.max_age
        age = None if activity.last_at is None else snapshot.taken_at - activity.last_at
        if activity.error:
            summary = f"{activity.name} cannot be read: {activity.error}"
        elif age is None:
            summary = f"{activity.name}: nothing handled yet"
        else:
            summary = f"{activity.name}: nothing handled for {format_age(age)} (limit {format_duration(max_age)})"
        yield Observation(
            key=f"inactive:{activity.key}",
            rule="inactive",
            subject=activity.name,
            bad=bool(activity.error) or age is None or age > max_age,
            level=Level.WARNING if activity.error else _level(cfg.level),
            summary=summary,
            detail=activity.detail,
            source=activity.source,
        )


def lock(snapshot: Snapshot, ctx: RuleContext) -> Iterator[Observation]:
    cfg = ctx.config.lock
    for item in snapshot.locks:
        level, summary = Level.OK, f"lock {item.name} is {item.state.value}"
        if item.error or item.state is LockState.UNKNOWN:
            level, summary = Level.WARNING, f"lock {item.name} cannot be read: {item.error or 'unknown state'}"
        elif item.state is LockState.STALE:
            expired = f", expired {_ago(snapshot, item.expires_at)}" if item.expires_at else ""
            level, summary = Level.WARNING, f"lock {item.name} is stale: held by {item.holder or '?'}{expired}"
        elif item.state is LockState.UNEXPECTED:
            level = Level.CRITICAL
            summary = f"lock {item.name} is held by {item.holder or '?'}, expected {item.expected_holder or '?'}"
        elif item.state is LockState.FREE and _matches_any(item.name, cfg.expect_held):
            level, summary = Level.WARNING, f"lock {item.name} is free but should be held"
        yield Observation(
            key=f"lock:{item.key}",
            rule="lock",
            subject=item.name,
            bad=level is not Level.OK,
            level=level,
            summary=summary,
            source=item.source,
        )


def dispatch(snapshot: Snapshot, ctx: RuleContext) -> Iterator[Observation]:
    cfg = ctx.config.dispatch
    for run in snapshot.dispatch:
        unaccounted = run.processed - run.sent - run.failed
        level = Level.CRITICAL if unaccounted != 0 else Level.WARNING if run.failed > 0 else Level.OK
        settling = run.last_event_at is not None and snapshot.taken_at - run.last_event_at < cfg.settle
        problem = f"{unaccounted} not delivered" if unaccounted > 0 else f"{run.failed} failed"
        if unaccounted < 0:
            problem = f"{-unaccounted} more sent or failed than processed"
        summary = f"{run.name}: processed {run.processed}, sent {run.sent}, failed {run.failed} ({problem})"
        if run.error:
            level, summary = Level.WARNING, f"{run.name} cannot be read: {run.error}"
        yield Observation(
            key=f"dispatch:{run.key}",
            rule="dispatch",
            subject=run.name,
            bad=level is not Level.OK,
            level=level,
            summary=summary,
            detail=None if run.run_started_at is None else f"run started {_ago(snapshot, run.run_started_at)}",
            source=run.source,
            hold=settling,
        )


def health(snapshot: Snapshot, ctx: RuleContext) -> Iterator[Observation]:
    level = _level(ctx.config.health.level)
    for check in snapshot.health:
        failing = check.failing_components
        if failing:
            reason = ", ".join(f"{c.name} {c.detail or 'failing'}" for c in failing)
        elif check.error:
            reason = check.error
        else:
            reason = f"HTTP {check.status_code}" if check.status_code else (check.overall or "failing")
        yield Observation(
            key=f"health:{check.key}",
            rule="health",
            subject=check.name,
            bad=not check.ok,
            level=level,
            summary=f"health {check.name} failing: {reason}",
            detail=mask_url(check.url),
            source=check.source,
        )


def checks(snapshot: Snapshot, ctx: RuleContext) -> Iterator[Observation]:
    for check in snapshot.checks:
        yield Observation(
            key=f"{check.kind}:{check.key}",
            rule=check.kind,
            subject=check.name,
            bad=check.level is not Level.OK,
            level=check.level,
            summary=f"{check.name}: {check.detail or check.level.label}",
            source=check.source,
        )


RULES: dict[str, RuleFunction] = {
    "source_down": source_down,
    "process_down": process_down,
    "restart_loop": restart_loop,
    "memory": memory,
    "queue_depth": queue_depth,
    "queue_growing": queue_growing,
    "inactive": inactive,
    "lock": lock,
    "dispatch": dispatch,
    "health": health,
    "checks": checks,
}
"""Rule name -> function; each is configured by the `[alerts.<name>]` section of the same name."""


def rule_config(config: AlertsConfig, rule: str) -> RuleConfig:
    """The config section of a rule name as alerts carry it (checks' kinds, e.g. `backup`, share `checks`)."""
    section = getattr(config, rule, None) if rule in RULES else None
    return section if isinstance(section, RuleConfig) else config.checks


def observe(snapshot: Snapshot, ctx: RuleContext) -> list[Observation]:
    """Every enabled rule's observations on `snapshot`, minus what each rule is told to ignore."""
    found: list[Observation] = []
    for name, function in RULES.items():
        cfg = rule_config(ctx.config, name)
        if not cfg.enabled:
            continue
        observed = function(snapshot, ctx)
        if cfg.ignore:  # most rules ignore nothing: skip the per-item match, this runs for every item every tick
            observed = (o for o in observed if not _matches_any(o.subject, cfg.ignore))
        found.extend(observed)
    return found


TREND_RULES = frozenset({"queue_growing"})
"""Rules about a trend: one look cannot call a figure bad by them, only their alert (after `for`) can."""


def findings(snapshot: Snapshot, config: AlertsConfig) -> list[Observation]:
    """What the rules call bad in `snapshot` right now, with no time thresholds (a screen's colours and notes)."""
    return [o for o in observe(snapshot, RuleContext(config, once=True)) if o.bad and o.rule not in TREND_RULES]


def judge(snapshot: Snapshot, config: AlertsConfig) -> Level:
    """The worst level among `findings`."""
    return max((o.level for o in findings(snapshot, config)), default=Level.OK)


def _matches_any(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name.lower(), p.lower()) for p in patterns)


MANAGED = {"process": "a plain process", "pm2": "under PM2", "systemd": "under systemd", "docker": "under Docker"}


def _restarts(total: int | None) -> str:
    return "restarts unknown" if total is None else f"{total} restarts in total"


def _ago(snapshot: Snapshot, t: float) -> str:
    return f"{format_age(snapshot.taken_at - t)} ago"
