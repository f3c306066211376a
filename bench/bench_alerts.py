"""What the alerting processor costs per snapshot, shown and delivering, for a large small deployment.

Run: uv run python -m bench.bench_alerts
It judges 2,000 snapshots of 50 processes, 50 queues, 5 locks, 5 health checks and the host (a quarter of the
processes crash-looping, some queues over their thresholds), one source read apart, and prints the mean and
95th percentile time per snapshot: display only (the TUI), persisting state and queueing notifications in the
state store (the daemon), and the same in a PostgreSQL shared by daemons on several hosts (the leader).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from types import MappingProxyType

from opstui.alerts import Alerting
from opstui.config import Config
from opstui.model import (
    HealthInfo,
    HostMemory,
    LockInfo,
    LockState,
    MemoryInfo,
    ProcessInfo,
    QueueInfo,
    Snapshot,
    SourceStatus,
)
from opstui.state import StateStore

SNAPSHOTS = 2000


def snapshot(i: int, t: float) -> Snapshot:
    sources = {
        name: SourceStatus(name=name, kind=name, ok=True, checked_at=t, last_ok_at=t)
        for name in ("pm2", "redis", "postgres", "http", "host")
    }
    processes = tuple(
        ProcessInfo(
            key=f"pm2:p{n}",
            name=f"p{n}",
            manager="pm2",
            status="online",
            source="pm2",
            restarts_total=(i // 30) if n % 4 == 0 else 0,
            rss_bytes=100_000_000,
        )
        for n in range(50)
    )
    queues = tuple(
        QueueInfo(key=f"redis/q{n}", name=f"q{n}", kind="list", depth=(n * 7 + i) % 300, source="redis")
        for n in range(50)
    )
    locks = tuple(
        LockInfo(key=f"pg/l{n}", name=f"l{n}", state=LockState.HELD, source="postgres", holder="a") for n in range(5)
    )
    health = tuple(
        HealthInfo(key=f"h{n}", name=f"h{n}", url="http://127.0.0.1/health", ok=(i + n) % 7 != 0, source="http")
        for n in range(5)
    )
    host = HostMemory(
        total_bytes=8 << 30,
        available_bytes=2 << 30,
        used_percent=75.0,
        swap_total_bytes=0,
        swap_used_percent=0.0,
        source="host",
    )
    return Snapshot(
        taken_at=t,
        instance="bench",
        sources=MappingProxyType(sources),
        processes=processes,
        queues=queues,
        locks=locks,
        health=health,
        memory=MemoryInfo(host=host),
    )


def measure(alerting: Alerting) -> list[float]:
    times = []
    t = 1_800_000_000.0
    for i in range(SNAPSHOTS):
        snap = snapshot(i, t)
        start = time.perf_counter()
        alerting(snap)
        times.append((time.perf_counter() - start) * 1e6)
        t += 2.0
    return times


def report(label: str, times: list[float]) -> None:
    p95 = statistics.quantiles(times, n=20)[-1]
    print(f"{label:<42} mean {statistics.fmean(times):7.0f} µs   p95 {p95:7.0f} µs")


def main() -> None:
    telegram = {"token": "123456:TEST-not-a-real-token", "chat_id": -100200300400}
    with tempfile.TemporaryDirectory() as tmp:
        config = Config.model_validate({"general": {"state_dir": tmp}, "telegram": telegram})
        report("display only (TUI)", measure(Alerting(config)))
        store = StateStore.in_dir(Path(tmp))
        report("persisting + queueing (daemon)", measure(Alerting(config, store=store, deliver=True)))
        store.close()
        report("persisting + queueing, shared PostgreSQL", measure(_leading_on_postgres(Path(tmp), config)))


def _leading_on_postgres(tmp: Path, config: Config) -> Alerting:
    """The leader of several daemons ([daemon.ha]): the same work against a PostgreSQL on this host, fenced."""
    import atexit

    from opstui.demo.servers import EmbeddedPostgres
    from opstui.state import Fence
    from opstui.state_postgres import PostgresStore

    tmp.chmod(0o711)
    server = EmbeddedPostgres(tmp / "postgres").start()
    store = PostgresStore(server.dsn)
    atexit.register(server.stop)
    atexit.register(store.close)
    with store.transaction() as db:
        db.execute(
            "INSERT INTO leases (name, holder, token, expires_at, acquired_at, renewed_at) "
            "VALUES ('leader', 'bench', 1, 0, 0, 0)"
        )
    store.fence = Fence(1, time.monotonic() + 3600)
    return Alerting(config, store=store, deliver=True)


if __name__ == "__main__":
    main()
