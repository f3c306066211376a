"""A deterministic world for the TUI's tests: a snapshot with every pane's facts, a scripted feed, a frozen clock.

Run it to see the dashboard on this world in a terminal: `uv run python tests/tui_sample.py [--theme NAME]`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from types import MappingProxyType

from opstui.config import Config
from opstui.daemon import DaemonPresence
from opstui.model import (
    QUEUE_DEPTH,
    ActivityInfo,
    AlertInfo,
    CheckInfo,
    DispatchInfo,
    HealthComponent,
    HealthInfo,
    HostMemory,
    Level,
    LockInfo,
    LockState,
    LogTail,
    MemoryInfo,
    ProcessInfo,
    QueueInfo,
    RedisMemory,
    Snapshot,
    SourceStatus,
    TopProcess,
    series_key,
)

NOW = 1_735_787_045.0
"""2025-01-02 03:04:05 UTC: the frozen clock of every TUI test."""
MiB = 1024 * 1024
GiB = 1024 * MiB


def ok(name: str, kind: str, provides: set[str], age: float = 1.0) -> SourceStatus:
    return SourceStatus(
        name=name,
        kind=kind,
        ok=True,
        checked_at=NOW - age,
        last_ok_at=NOW - age,
        duration_ms=4.0,
        provides=frozenset(provides),
    )


def failed(name: str, kind: str, provides: set[str], error: str, last_ok_age: float | None) -> SourceStatus:
    last = None if last_ok_age is None else NOW - last_ok_age
    return SourceStatus(
        name=name, kind=kind, ok=False, checked_at=NOW - 1, last_ok_at=last, error=error, provides=frozenset(provides)
    )


def series(values: list[float], step: float = 2.0) -> tuple[tuple[float, float], ...]:
    start = NOW - step * (len(values) - 1)
    return tuple((start + i * step, v) for i, v in enumerate(values))


def sample_snapshot() -> Snapshot:
    """Every part of the model, with something wrong in most panes, as at 3 a.m."""
    sources = {
        "host": ok("host", "host", {"host"}),
        "pm2": ok("pm2", "pm2", {"processes", "logs"}, age=0.4),
        "redis main": failed(
            "redis main", "redis", {"queues", "redis_memory"}, "connection refused at 127.0.0.1:6380", last_ok_age=125
        ),
        "postgres": ok("postgres", "postgres", {"queues", "locks"}, age=2),
        "dispatch log": ok("dispatch log", "dispatch", {"dispatch"}, age=3),
        "api health": ok("api health", "health", {"health"}, age=1.5),
    }
    processes = (
        ProcessInfo(
            key="pm2:api",
            name="api",
            manager="pm2",
            status="online",
            source="pm2",
            pid=4101,
            started_at=NOW - 7530,
            restarts_total=2,
            restarts_last_hour=0,
            rss_bytes=182 * MiB,
            cpu_percent=3.2,
            log_files=("/home/bot/.pm2/logs/api-error.log",),
        ),
        ProcessInfo(
            key="pm2:worker",
            name="worker",
            manager="pm2",
            status="online",
            source="pm2",
            pid=4188,
            started_at=NOW - 41,
            restarts_total=283,
            restarts_last_hour=12,
            rss_bytes=96 * MiB,
            cpu_percent=41.0,
            log_files=("/home/bot/.pm2/logs/worker-error.log",),
        ),
        ProcessInfo(
            key="pm2:batch",
            name="batch",
            manager="pm2",
            status="stopped",
            source="pm2",
            pid=None,
            restarts_total=5,
            restarts_last_hour=0,
            rss_bytes=None,
            cpu_percent=None,
        ),
        ProcessInfo(
            key="systemd:crm-sync.service",
            name="crm-sync.service",
            manager="systemd",
            status="online",
            source="pm2",
            pid=880,
            started_at=NOW - 3 * 86400 - 4000,
            restarts_total=0,
            restarts_last_hour=0,
            rss_bytes=64 * MiB,
            cpu_percent=0.4,
        ),
    )
    incoming = [float(v) for v in (20, 24, 30, 41, 55, 60, 72, 80, 95, 110, 118, 130, 141, 150, 158, 162)]
    queues = (
        QueueInfo(
            key="redis main/queue:incoming",
            name="queue:incoming",
            kind="list",
            depth=162,
            source="redis main",
            parts=MappingProxyType({"waiting": 162}),
            growth_per_min=12.4,
            warn=50,
            crit=150,
        ),
        QueueInfo(
            key="redis main/bull:emails",
            name="bull:emails",
            kind="bullmq",
            depth=3,
            source="redis main",
            parts=MappingProxyType({"waiting": 3, "active": 1, "delayed": 2, "failed": 0}),
            growth_per_min=0.0,
            warn=100,
            crit=500,
        ),
        QueueInfo(
            key="postgres/failed_amocrm_sync",
            name="failed_amocrm_sync",
            kind="sql",
            depth=7,
            source="postgres",
            growth_per_min=-0.5,
            warn=20,
            crit=100,
        ),
    )
    host = HostMemory(
        total_bytes=8 * GiB,
        available_bytes=3 * GiB,
        used_percent=62.4,
        swap_total_bytes=2 * GiB,
        swap_used_percent=3.0,
        source="host",
        load_1m=0.52,
        cpu_count=2,
        top=(
            TopProcess(pid=2231, name="postgres", rss_bytes=412 * MiB, cpu_percent=1.5),
            TopProcess(pid=4101, name="node /app/api.js", rss_bytes=182 * MiB, cpu_percent=3.2),
            TopProcess(pid=4188, name="node /app/worker.js", rss_bytes=96 * MiB, cpu_percent=41.0),
            TopProcess(pid=1210, name="redis-server", rss_bytes=64 * MiB, cpu_percent=0.7),
        ),
    )
    memory = MemoryInfo(
        host=host, redis=(RedisMemory(name="main", used_bytes=812 * MiB, max_bytes=1 * GiB, source="redis main"),)
    )
    locks = (
        LockInfo(
            key="postgres/daily_batch",
            name="daily_batch",
            state=LockState.HELD,
            source="postgres",
            holder="vps-1:batch:4242",
            since=NOW - 300,
            expires_at=NOW + 250,
            updated_at=NOW - 10,
        ),
        LockInfo(
            key="postgres/crm_sync",
            name="crm_sync",
            state=LockState.STALE,
            source="postgres",
            holder="vps-2:sync:77",
            since=NOW - 7200,
            expires_at=NOW - 125,
        ),
    )
    dispatch = (
        DispatchInfo(
            key="dispatch log/daily",
            name="daily report",
            source="dispatch log",
            processed=120,
            sent=115,
            failed=2,
            run_started_at=NOW - 3700,
            last_event_at=NOW - 3400,
            skipped_lines=1,
        ),
    )
    health = (
        HealthInfo(
            key="api health",
            name="api /health",
            url="http://127.0.0.1:8080/health",
            ok=False,
            source="api health",
            status_code=503,
            latency_ms=42.0,
            overall="degraded",
            components=(
                HealthComponent("redis", True),
                HealthComponent("database", True),
                HealthComponent("whatsapp", False, "disconnected"),
            ),
        ),
    )
    checks = (
        CheckInfo(
            key="backup",
            name="nightly backup",
            kind="backup",
            level=Level.WARNING,
            source="postgres",
            detail="newest backup is 1d 3h old (limit 1d)",
        ),
    )
    activity = (
        ActivityInfo(
            key="last-msg",
            name="last message handled",
            source="postgres",
            last_at=NOW - 75,
            max_age=600,
            detail="last-msg:* in redis",
        ),
        ActivityInfo(
            key="crm-sync",
            name="last CRM sync",
            source="postgres",
            last_at=NOW - 1900,
            max_age=900,
            detail="max(synced_at)",
        ),
    )
    logs = (
        LogTail(
            key="worker-error",
            name="worker",
            source="pm2",
            path="/home/bot/.pm2/logs/worker-error.log",
            lines=(
                "2025-01-02 03:03:59 ERROR Error: connect ECONNREFUSED 127.0.0.1:6380",
                "2025-01-02 03:04:01 ERROR [error] queue consumer died; [red]not markup[/red] [/oops]",
                "2025-01-02 03:04:03 ERROR token=*** rejected \x1b]0;pwned\x07by the CRM",
            ),
        ),
        LogTail(
            key="api-error",
            name="api",
            source="pm2",
            path="/home/bot/.pm2/logs/api-error.log",
            lines=("2025-01-02 02:58:12 ERROR whatsapp session closed, reconnecting",),
        ),
    )
    alerts = (
        AlertInfo(
            key="restart-loop:pm2:worker",
            rule="restart_loop",
            level=Level.CRITICAL,
            state="firing",
            summary="worker restart loop",
            since=NOW - 660,
            detail="12 restarts in the last hour",
        ),
        AlertInfo(
            key="queue:incoming",
            rule="queue_depth",
            level=Level.CRITICAL,
            state="firing",
            summary="queue:incoming backed up",
            since=NOW - 240,
            detail="162 waiting",
        ),
        AlertInfo(
            key="health:api",
            rule="health",
            level=Level.CRITICAL,
            state="resolved",
            summary="api /health failing",
            since=NOW - 1500,
        ),
    )
    history = {
        series_key(QUEUE_DEPTH, queues[0].key): series(incoming),
        series_key(QUEUE_DEPTH, queues[1].key): series([2, 3, 5, 4, 3, 3, 2, 3]),
        series_key(QUEUE_DEPTH, queues[2].key): series([9, 9, 8, 8, 8, 7, 7, 7]),
        "host_memory_used_percent:host": series([58.0 + (i % 7) * 0.8 for i in range(40)]),
    }
    return Snapshot(
        taken_at=NOW,
        instance="bot-vps-1",
        sources=MappingProxyType(sources),
        processes=processes,
        queues=queues,
        memory=memory,
        locks=locks,
        dispatch=dispatch,
        health=health,
        activity=activity,
        logs=logs,
        checks=checks,
        alerts=alerts,
        series=MappingProxyType(history),
        sequence=1,
    )


class ScriptedFeed:
    """Publishes the snapshots a test hands it, as the engine would."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self._subscribers: list[Callable[[Snapshot], None]] = []
        self.started = False
        self.stopped = False

    def subscribe(self, callback: Callable[[Snapshot], None]) -> Callable[[], None]:
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    async def start(self) -> None:
        self.started = True
        self.publish(self.snapshot)

    async def stop(self) -> None:
        self.stopped = True

    def publish(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        for callback in list(self._subscribers):
            callback(snapshot)

    def change(self, **changes: object) -> Snapshot:
        """Publish the current snapshot with some parts replaced; returns it."""
        snapshot = dataclasses.replace(self.snapshot, sequence=self.snapshot.sequence + 1, **changes)  # type: ignore[arg-type]
        self.publish(snapshot)
        return snapshot


def leader_daemon() -> DaemonPresence:
    return DaemonPresence(
        pid=999, host="vps-1", instance="bot-vps-1", started_at=NOW - 86400, heartbeat_at=NOW - 2, leader=True
    )


def sample_config(*, read_only: bool = False, **tui: object) -> Config:
    general = {"instance": "bot-vps-1", "timezone": "UTC", "read_only": read_only}
    return Config.model_validate({"general": general, "tui": tui})


def sample_app(  # type: ignore[no-untyped-def]
    snapshot: Snapshot | None = None,
    *,
    theme: str = "opstui-dark",
    commands: tuple[object, ...] = (),
    read_only: bool = False,
    config: Config | None = None,
    actions: object = None,
    presence: Callable[[], DaemonPresence | None] = leader_daemon,
    **tui: object,
):
    """The dashboard on the sample world: frozen clock, fixed host, a leading daemon, only shipped themes.

    `config` replaces the sample config (to define actions); `actions` feed the Actions pane.
    """
    from opstui.tui.app import OpsApp
    from opstui.tui.themes import load_themes, shipped_themes_dir

    feed = ScriptedFeed(snapshot or sample_snapshot())
    return OpsApp(
        config or sample_config(read_only=read_only, **tui),
        feed=feed,
        clock=lambda: NOW,
        host="vps-1",
        presence=presence,
        theme=theme,
        themes=load_themes([shipped_themes_dir()]),
        commands=commands,
        actions=actions,  # type: ignore[arg-type]
    )


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="the dashboard on the TUI tests' sample world")
    parser.add_argument("--theme", default="opstui-dark")
    sample_app(theme=parser.parse_args().theme).run()
