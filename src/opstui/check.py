"""`opstui check`: one pass over every source, printed as a plain table or one JSON object, with an exit status.

Plain text, no Rich: this runs from cron and scripts, where a terminal library is dead weight.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from opstui.config import Config
from opstui.config.alerts import AlertsConfig
from opstui.errors import StateError
from opstui.model import Level, Snapshot
from opstui.state import DB_NAME, StateStore, Store
from opstui.units import format_age, format_bytes

EXIT_CODES = {Level.OK: 0, Level.WARNING: 1, Level.CRITICAL: 2}


async def check_once(config: Config) -> Snapshot:
    """One pass over every source, judged by the alert rules once (no `for` durations: what holds right now).

    When a state store exists, its silences are honoured (a silenced alert still counts: it is real) and the
    daemon's delivery status is judged too, so a Telegram that refuses the token fails the check.
    """
    from opstui.alerts import Alerting, stored_delivery_checks
    from opstui.engine import build_engine

    engine = build_engine(config)
    store = _existing_store(config)
    alerting = Alerting(config, store=store, once=True, clock=engine.clock)
    if store is not None and config.telegram.configured:
        alerting.extra_checks = lambda: stored_delivery_checks(store, engine.clock())
    engine.processors.append(alerting)
    try:
        return await engine.collect_once()
    finally:
        await engine.stop()
        if store is not None:
            store.close()


def _existing_store(config: Config) -> Store | None:
    if config.daemon.ha.enabled:  # the daemons' shared database: where the leader records delivery
        from opstui.state_postgres import PostgresStore

        return PostgresStore(config.daemon.ha.dsn, timeout=config.daemon.ha.timeout)
    # `opstui check` from cron must not create a state database where no daemon ever ran.
    path = config.state_dir() / DB_NAME
    if not path.exists():
        return None
    try:
        return StateStore(path)
    except StateError:
        return None


def assess(snapshot: Snapshot) -> tuple[Level, list[str]]:
    """The worst level among the alerts firing in `snapshot`, and their summaries.

    The alerts come from the rules (`opstui.alerts`), so `opstui check`, the TUI and the daemon agree. A
    silenced alert counts: a silence mutes notifications, it does not make the problem go away.
    """
    firing = [a for a in snapshot.alerts if a.state in ("firing", "silenced")]
    level = max((a.level for a in firing), default=Level.OK)
    return level, [a.summary + (" (silenced)" if a.state == "silenced" else "") for a in firing if a.level is level]


def to_json(snapshot: Snapshot, alerts: AlertsConfig | None = None) -> dict[str, Any]:
    """The JSON document of `opstui check --json`; every item says which source read it and when, and its
    `level` as the alert rules (with `alerts`' thresholds) judge it right now."""
    from opstui.alerts.rules import judge

    level, reasons = assess(snapshot)
    now = snapshot.taken_at
    alerts = alerts or AlertsConfig()

    def items(values: Iterable[Any], section: str) -> list[Any]:
        out = []
        for value in values:
            item = _with_read_at(_jsonable(value), snapshot)
            section_only: dict[str, Any] = {section: (value,)}
            alone = Snapshot(taken_at=now, instance="", sources={}, **section_only)
            item["level"] = judge(alone, alerts).label
            out.append(item)
        return out

    return {
        "status": level.label,
        "reasons": reasons,
        "instance": snapshot.instance,
        "taken_at": _iso(now),
        "sources": {
            name: {**_jsonable(status), "age_s": _round(status.age(now))} for name, status in snapshot.sources.items()
        },
        "processes": items(snapshot.processes, "processes"),
        "queues": items(snapshot.queues, "queues"),
        "memory": {
            "host": _with_read_at(_jsonable(snapshot.memory.host), snapshot) if snapshot.memory.host else None,
            "redis": [_with_read_at(_jsonable(r), snapshot) for r in snapshot.memory.redis],
        },
        "locks": items(snapshot.locks, "locks"),
        "dispatch": items(snapshot.dispatch, "dispatch"),
        "health": items(snapshot.health, "health"),
        "activity": items(snapshot.activity, "activity"),
        "checks": items(snapshot.checks, "checks"),
        "alerts": [_jsonable(a) for a in snapshot.alerts],
    }


def render_json(snapshot: Snapshot, alerts: AlertsConfig | None = None) -> str:
    return json.dumps(to_json(snapshot, alerts), indent=2, ensure_ascii=False)


_COMPUTED = ("mismatch", "used_percent")


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
        for name in _COMPUTED:
            if hasattr(type(value), name) and name not in out:
                out[name] = _jsonable(getattr(value, name))
        for name, field_value in list(out.items()):
            if (name.endswith("_at") or name == "since") and isinstance(field_value, float):
                out[name] = _iso(field_value)
        return out
    if isinstance(value, Level):
        return value.label
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, frozenset):  # a source's `provides`
        return sorted(_jsonable(v) for v in value)
    if isinstance(value, float):
        return _round(value)
    return value


def _with_read_at(item: Any, snapshot: Snapshot) -> Any:
    if isinstance(item, dict) and "source" in item:
        status = snapshot.sources.get(item["source"])
        item["read_at"] = _iso(status.last_ok_at) if status and status.last_ok_at else None
        item["stale"] = bool(status and not status.ok)
    return item


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def render_text(snapshot: Snapshot) -> str:
    """A plain table for people and cron mail: status first, then each section that has something."""
    level, reasons = assess(snapshot)
    now = snapshot.taken_at
    when = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    out = [f"{snapshot.instance}  {when}  status: {level.label.upper()}"]
    out += [f"  - {reason}" for reason in reasons]

    out.append("\nSOURCES")
    for status in snapshot.sources.values():
        if status.ok:
            took = f"{status.duration_ms:.0f} ms" if status.duration_ms is not None else ""
            out.append(f"  ok    {status.name:<24} {took}  {status.detail or ''}".rstrip())
        else:
            out.append(f"  FAIL  {status.name:<24} {status.error} (last good: {_ago(status.age(now))})")

    host = snapshot.memory.host
    if host is not None or snapshot.memory.redis:
        out.append("\nMEMORY")
        if host is not None:
            out.append(
                f"  host  {host.used_percent:.1f}% used, {format_bytes(host.available_bytes)} available "
                f"of {format_bytes(host.total_bytes)}, swap {host.swap_used_percent:.1f}%"
                + (f", load {host.load_1m}" if host.load_1m is not None else "")
            )
            for top in host.top:
                out.append(f"        {format_bytes(top.rss_bytes):>10}  {top.name} ({top.pid})")
        for redis in snapshot.memory.redis:
            limit = f" of {format_bytes(redis.max_bytes)}" if redis.max_bytes else " (no maxmemory)"
            out.append(f"  redis {redis.name}: {format_bytes(redis.used_bytes)}{limit}")

    _table(
        out,
        "PROCESSES",
        snapshot.processes,
        lambda p: (
            f"  {p.name:<20} {p.manager:<8} {p.status:<11} pid {p.pid or '-':<7} "
            f"restarts {_num(p.restarts_total)} ({_num(p.restarts_last_hour)} last hour)  "
            f"rss {format_bytes(p.rss_bytes)}  cpu {_num(p.cpu_percent)}%"
        ),
    )
    _table(
        out,
        "QUEUES",
        snapshot.queues,
        lambda q: (
            f"  {q.name:<24} {q.kind:<8} depth {_num(q.depth):<7}"
            + "".join(f" {k} {v}" for k, v in q.parts.items())
            + (" PAUSED" if q.paused else "")
            + (f"  {q.growth_per_min:+.1f}/min" if q.growth_per_min is not None else "")
            + (f"  error: {q.error}" if q.error else "")
        ),
    )
    _table(
        out,
        "LOCKS",
        snapshot.locks,
        lambda x: (
            f"  {x.name:<24} {x.state.value:<10} holder {x.holder or '-'}"
            + (f"  expires in {_signed_age(x.expires_at, now)}" if x.expires_at else "")
            + (f"  error: {x.error}" if x.error else "")
        ),
    )
    _table(
        out,
        "DISPATCH",
        snapshot.dispatch,
        lambda d: (
            f"  {d.name:<24} processed {d.processed}  sent {d.sent}  failed {d.failed}"
            + ("  MISMATCH" if d.mismatch else "")
            + (f"  skipped {d.skipped_lines} lines that are not JSON" if d.skipped_lines else "")
            + (f"  error: {d.error}" if d.error else "")
        ),
    )
    _table(
        out,
        "HEALTH",
        snapshot.health,
        lambda h: (
            f"  {h.name:<24} {'ok' if h.ok else 'FAIL':<5} {h.status_code or '-'}  "
            + (f"{h.latency_ms:.0f} ms" if h.latency_ms is not None else "")
            + "".join(f"  {c.name}: {c.detail or 'failing'}" for c in h.failing_components)
            + (f"  {h.error}" if h.error else "")
        ),
    )
    _table(
        out,
        "ACTIVITY",
        snapshot.activity,
        lambda a: (
            f"  {a.name:<24} last {_ago(None if a.last_at is None else now - a.last_at)}"
            + (f"  {a.detail}" if a.detail else "")
            + (f"  error: {a.error}" if a.error else "")
        ),
    )
    _table(out, "CHECKS", snapshot.checks, lambda c: f"  {c.name:<24} {c.level.label:<8} {c.detail or ''}")
    _table(
        out,
        "ALERTS",
        snapshot.alerts,
        lambda a: (
            f"  {a.level.label:<8} {a.state:<8} {a.summary}"
            + (f"  [{a.muted_by}]" if a.muted_by else "")
            + (f"  [folded under {a.cause}]" if a.cause else "")
        ),
    )
    return "\n".join(out)


def _table(out: list[str], title: str, rows: Iterable[Any], line: Any) -> None:
    rows = list(rows)
    if rows:
        out.append(f"\n{title}")
        out.extend(line(row).rstrip() for row in rows)  # padded columns, no trailing spaces


def _ago(seconds: float | None) -> str:
    return "never" if seconds is None else f"{format_age(seconds)} ago"


def _signed_age(t: float, now: float) -> str:
    delta = t - now
    return format_age(delta) if delta >= 0 else f"-{format_age(-delta)} (expired)"


def _num(value: float | int | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if isinstance(value, float) else str(value)
