"""/metrics in Prometheus' text format: the daemon's own health, and every monitored figure from `model.METRICS`.

The monitored figures are not listed here: every item type `METRICS` declares figures for becomes one gauge
per figure (`opstui_queue_depth{source=..., key=..., name=...}`), so a figure declared once for the TUI's
sparklines is exported too. Items a failing source last reported are still exported (with that source's
`opstui_source_up` at 0), as the TUI keeps showing them marked stale.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from opstui import __version__
from opstui.model import Facts, Level, Snapshot, iter_metric_values
from opstui.notify.telegram import Failure
from opstui.redact import redact

PREFIX = "opstui_"
ALERT_STATES = ("pending", "firing", "silenced", "resolved")


@dataclass(frozen=True, slots=True)
class DaemonFacts:
    """What the daemon knows about itself at a scrape."""

    instance: str
    started_at: float
    last_tick_age: float | None
    ticks: int
    leader: bool
    fencing_token: int | None
    outbox_pending: int | None
    """As the notifier last read it; None without a notifier (no [telegram])."""
    outbox_oldest_age: float | None
    telegram: Mapping[str, int] = field(default_factory=dict)
    """`sent` and one count per kind of failure (rate_limited, transient, ...)."""
    state_ok: bool = True
    ready: bool = True
    reloads: int = 0
    reload_failures: int = 0
    rss_bytes: int | None = None


class _Exposition:
    """Samples grouped by metric, as the format requires (one HELP and TYPE, then all of its samples)."""

    def __init__(self) -> None:
        self._families: dict[str, list[str]] = {}

    def add(self, name: str, kind: str, help_text: str, value: float, labels: Mapping[str, str] | None = None) -> None:
        metric = PREFIX + name
        family = self._families.get(metric)
        if family is None:
            family = self._families[metric] = [f"# HELP {metric} {_help(help_text)}", f"# TYPE {metric} {kind}"]
        family.append(f"{metric}{_labels(labels)} {_number(value)}")

    def text(self) -> str:
        return "".join(line + "\n" for family in self._families.values() for line in family)


def render(snapshot: Snapshot, daemon: DaemonFacts) -> str:
    """The whole exposition (text/plain; version=0.0.4)."""
    out = _Exposition()
    out.add("build_info", "gauge", "opstui's version", 1, {"version": __version__, "instance": daemon.instance})
    out.add("start_time_seconds", "gauge", "When the daemon started (Unix time)", daemon.started_at)
    if daemon.last_tick_age is not None:
        out.add(
            "scheduler_last_tick_age_seconds", "gauge", "Seconds since the scheduler last ticked", daemon.last_tick_age
        )
    out.add("scheduler_ticks_total", "counter", "Scheduler ticks since the daemon started", daemon.ticks)
    out.add("ready", "gauge", "1 while /readyz says the daemon works", int(daemon.ready))
    out.add("leader", "gauge", "1 while this daemon leads (sends notifications and reports)", int(daemon.leader))
    if daemon.fencing_token is not None:
        out.add("fencing_token", "gauge", "The fencing token of the lease this daemon holds", daemon.fencing_token)
    out.add("state_store_up", "gauge", "1 while the state database answers", int(daemon.state_ok))
    if daemon.outbox_pending is not None:
        out.add("outbox_pending", "gauge", "Notifications waiting to be sent", daemon.outbox_pending)
    if daemon.outbox_oldest_age is not None:
        out.add(
            "outbox_oldest_age_seconds",
            "gauge",
            "How long the oldest waiting notification has been due",
            daemon.outbox_oldest_age,
        )
    out.add("telegram_messages_sent_total", "counter", "Messages Telegram accepted", daemon.telegram.get("sent", 0))
    # Every kind from the start, at 0: increase() cannot see a series' first sample, so a kind that appeared
    # only with its first error would never show that error.
    for failure in sorted(f.value for f in Failure):
        count = daemon.telegram.get(failure, 0)
        out.add("telegram_errors_total", "counter", "Telegram calls that failed, by kind", count, {"kind": failure})
    out.add("config_reloads_total", "counter", "Configs reloaded on SIGHUP", daemon.reloads)
    out.add(
        "config_reload_failures_total",
        "counter",
        "SIGHUP reloads refused (the old config kept)",
        daemon.reload_failures,
    )
    if daemon.rss_bytes is not None:
        out.add("daemon_resident_memory_bytes", "gauge", "Resident memory of the daemon itself", daemon.rss_bytes)

    for status in snapshot.sources.values():
        labels = {"source": status.name, "kind": status.kind}
        out.add("source_up", "gauge", "1 if the source's last collection succeeded", int(status.ok), labels)
        if status.duration_ms is not None:
            out.add(
                "source_collect_duration_seconds", "gauge", "How long the source's last collection took",
                status.duration_ms / 1000, labels,
            )  # fmt: skip
        if status.last_ok_at is not None:
            out.add(
                "source_last_success_timestamp_seconds", "gauge", "When the source last read its system (Unix time)",
                status.last_ok_at, labels,
            )  # fmt: skip

    counts = {(state, level): 0 for state in ALERT_STATES for level in (Level.WARNING, Level.CRITICAL)}
    for alert in snapshot.alerts:
        if alert.level is not Level.OK:
            counts[(alert.state, alert.level)] = counts.get((alert.state, alert.level), 0) + 1
    for (state, level), count in counts.items():
        out.add("alerts", "gauge", "Alerts by state and level", count, {"state": state, "level": level.label})

    _monitored(out, snapshot)
    return out.text()


def _monitored(out: _Exposition, snapshot: Snapshot) -> None:
    for metric, item, value in sorted(iter_metric_values(_as_facts(snapshot)), key=lambda m: (m[0].name, m[1].key)):
        labels = {"key": item.key, "source": item.source, "name": getattr(item, "name", item.key)}
        unit = f" ({metric.unit})" if metric.unit else ""
        out.add(metric.name, "gauge", metric.help + unit, value, labels)


def _as_facts(snapshot: Snapshot) -> Facts:
    """The snapshot's items as one `Facts`, which the declared figures are read from."""
    sections = {f.name: getattr(snapshot, f.name) for f in dataclasses.fields(Facts) if hasattr(snapshot, f.name)}
    return Facts(**{**sections, "host": snapshot.memory.host, "redis_memory": snapshot.memory.redis})


def _labels(labels: Mapping[str, str] | None) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{name}="{_escape(redact(str(value)))}"' for name, value in labels.items()) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))
