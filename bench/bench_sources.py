"""Per-tick cost of the data sources, wall and CPU, against real servers; prints a markdown table.

    uv run python -m bench.bench_sources            # everything (writes a 1 GB log under $TMPDIR)
    uv run python -m bench.bench_sources --quick    # skip the 1 GB log

CPU is this process's CPU time (all its threads): the Redis and PostgreSQL servers and the HTTP server run as
separate processes, so their work is not counted, only ours. Each figure is the median over the ticks run after
one warm-up tick (which pays for connecting and importing); first ticks are reported separately where they
do more (finding the latest run in a log).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from opstui.config.data import (
    DispatchLogConfig,
    HealthConfig,
    PostgresConfig,
    PrometheusConfig,
    RedisConfig,
    RedisQueueConfig,
)
from opstui.demo.backend import LOCK_TABLE
from opstui.demo.servers import EmbeddedPostgres, EmbeddedRedis, free_port, stop_process, wait_until
from opstui.sources.base import Source
from opstui.sources.dispatch import DispatchLogSource
from opstui.sources.http import HealthSource, PrometheusSource
from opstui.sources.postgres import PostgresSource
from opstui.sources.redis import RedisSource

KINDS = ("list", "zset", "stream", "bullmq", "bull", "rq", "celery", "sidekiq")
TICKS = 30


@dataclass
class Row:
    source: str
    scenario: str
    wall_ms: float
    cpu_ms: float
    note: str = ""


async def measure(action: Callable[[], Awaitable[Any]], ticks: int = TICKS) -> tuple[float, float]:
    """Median wall and CPU milliseconds of `action` over `ticks` runs."""
    walls, cpus = [], []
    for _ in range(ticks):
        wall, cpu = time.perf_counter(), time.process_time()
        await action()
        walls.append((time.perf_counter() - wall) * 1000)
        cpus.append((time.process_time() - cpu) * 1000)
    return statistics.median(walls), statistics.median(cpus)


async def ticks_of(source: Source, scenario: str, note: str = "", ticks: int = TICKS) -> Row:
    await source.collect()  # warm-up: connect, import, first scan
    wall, cpu = await measure(source.collect, ticks)
    return Row(source.kind, scenario, wall, cpu, note)


def fill_redis(url: str, queues: int) -> list[RedisQueueConfig]:
    """`queues` queues of every kind, each with some jobs in the layout its library uses."""
    import redis

    r = redis.Redis.from_url(url)
    r.flushall()
    pipe = r.pipeline(transaction=False)
    configs = []
    now = time.time()
    for i in range(queues):
        kind, name = KINDS[i % len(KINDS)], f"q{i}"
        configs.append(RedisQueueConfig(name=name, kind=kind))
        if kind == "list":
            pipe.lpush(name, *range(5))
        elif kind == "zset":
            pipe.zadd(name, {f"m{j}": now + j for j in range(5)})
        elif kind == "stream":
            for j in range(5):
                pipe.xadd(name, {"n": j})
        elif kind in ("bullmq", "bull"):
            pipe.lpush(f"bull:{name}:wait", *range(5))
            pipe.zadd(f"bull:{name}:failed", {"1": now})
        elif kind == "rq":
            pipe.lpush(f"rq:queue:{name}", *range(5))
            pipe.zadd(f"rq:finished:{name}", {"a": now + 500})
        elif kind == "celery":
            pipe.lpush(name, *range(5))
        else:
            pipe.lpush(f"queue:{name}", json.dumps({"enqueued_at": now}))
    pipe.execute()
    for i in range(2, queues, len(KINDS)):  # streams get a consumer group
        r.xgroup_create(f"q{i}", "workers", id="0")
    return configs


async def bench_redis(root: Path) -> list[Row]:
    import redis

    server = EmbeddedRedis(root / "redis").start()
    rows = []
    try:
        for count in (10, 100, 1000):
            configs = fill_redis(server.url, count)
            source = RedisSource(RedisConfig(url=server.url, queues=configs))
            commands = sum(len(source.readers[i].commands(time.time())) for i in range(count))
            rows.append(
                await ticks_of(
                    source, f"{count} queues, 8 kinds mixed, + memory", f"one round trip, {commands} commands"
                )
            )
            await source.close()
        r = redis.Redis.from_url(server.url)
        pipe = r.pipeline(transaction=False)
        for i in range(100_000):
            pipe.set(f"last-msg:{i}", str(time.time() - i), ex=86400)
        pipe.execute()
        activity = RedisSource(RedisConfig(url=server.url, activity=[{"name": "messages", "pattern": "last-msg:*"}]))
        first_wall, first_cpu = time.perf_counter(), time.process_time()
        await activity.collect()
        rows.append(
            Row(
                "redis",
                "activity `last-msg:*`, 100k keys: first tick",
                (time.perf_counter() - first_wall) * 1000,
                (time.process_time() - first_cpu) * 1000,
                "warm-up SCAN of up to 100 x 1000 keys",
            )
        )
        wall, cpu = await measure(activity.collect)
        rows.append(
            Row("redis", "activity `last-msg:*`, 100k keys: steady", wall, cpu, "1 SCAN COUNT 1000 + MGET 1000/tick")
        )
        await activity.close()
    finally:
        server.stop()
    return rows


async def bench_postgres(root: Path) -> list[Row]:
    server = EmbeddedPostgres(root / "postgres").start()
    try:
        server.psql(LOCK_TABLE)
        server.psql(
            "INSERT INTO failed_amocrm_sync (lead_id, error) SELECT g, '429' FROM generate_series(1, 1000) g;"
            "INSERT INTO batch_locks (lock_key, instance_id, expires_at) VALUES ('daily_batch', 'batch@x', "
            "now() + interval '1 hour');"
            "CREATE TABLE leads (id int, synced_at timestamptz); CREATE INDEX ON leads (synced_at);"
            "INSERT INTO leads SELECT g, now() - g * interval '1 second' FROM generate_series(1, 100000) g"
        )
        config = PostgresConfig(
            dsn=server.dsn,
            queues=[{"name": "retries", "table": "failed_amocrm_sync"}],
            locks=[
                {"name": "batch", "key": "daily_batch", "expected_holder": "batch@*"},
                {"name": "advisory", "kind": "advisory", "key": 42},
            ],
            activity=[{"name": "leads", "table": "leads", "column": "synced_at"}],
            dispatch=[
                {
                    "name": "report",
                    "query": "SELECT count(*) AS processed, count(*) AS sent, 0 AS failed FROM failed_amocrm_sync",
                }
            ],
        )
        source = PostgresSource(config)
        row = await ticks_of(source, "1 table queue, lock table, advisory lock, max(ts), dispatch query", "6 queries")
        await source.close()
        return [row]
    finally:
        server.stop()


LINE = {"where": "processUser", "status": "completed", "user": 0, "run": 0, "ts": "2024-05-01T10:00:00Z"}


def write_log(path: Path, size: int, run: int) -> None:
    """About `size` bytes of dispatch lines, the last `run` bytes of them one run (after its start line)."""
    line = (json.dumps(LINE) + "\n").encode()
    block = line * (1024 * 1024 // len(line))

    def fill(out: Any, until: int) -> None:
        while until - out.tell() >= len(block):
            out.write(block)
        out.write(line * max(0, (until - out.tell()) // len(line)))

    with path.open("wb") as out:
        fill(out, size - run)
        out.write((json.dumps({"where": "dailyReport", "phase": "start"}) + "\n").encode())
        fill(out, size)


MB = 1024 * 1024


async def bench_dispatch(root: Path, big: bool) -> list[Row]:
    rows = []
    logs = [(10 * MB, "10 MB", 100 * 1024, "100 KB")]
    if big:
        logs += [
            (1024 * MB, "1 GB", 100 * 1024, "100 KB"),
            (1024 * MB, "1 GB", 50 * MB, "50 MB"),
            (1024 * MB, "1 GB", 100 * MB, "100 MB"),
        ]
    line = (json.dumps(LINE) + "\n").encode()
    for size, label, run, run_label in logs:
        path = root / "dispatch.log"
        write_log(path, size, run)
        source = DispatchLogSource(DispatchLogConfig(name="report", path=str(path)))
        wall, cpu = time.perf_counter(), time.process_time()
        first = (await source.collect()).dispatch[0]
        lines = f"{first.processed:,} lines counted" if not first.error else "start not within lookback (64 MiB)"
        rows.append(
            Row(
                "dispatch",
                f"{label} log, latest run {run_label}: first open",
                (time.perf_counter() - wall) * 1000,
                (time.process_time() - cpu) * 1000,
                f"reads back to the run's start line; {lines}",
            )
        )
        if run > MB:
            path.unlink()
            continue
        wall_idle, cpu_idle = await measure(source.collect)
        rows.append(Row("dispatch", f"{label} log: steady, nothing new", wall_idle, cpu_idle))

        async def append_and_collect(path: Path = path, source: DispatchLogSource = source) -> None:
            with path.open("ab") as out:
                out.write(line * 100)
            await source.collect()

        wall_new, cpu_new = await measure(append_and_collect)
        rows.append(Row("dispatch", f"{label} log: steady, 100 new lines/tick", wall_new, cpu_new, "incl. the append"))
        await source.close()
        path.unlink()
    return rows


METRICS_LINES = 10_000


async def bench_http(root: Path) -> list[Row]:
    site = root / "site"
    site.mkdir()
    (site / "health").write_text(
        json.dumps({"status": "ok", "checks": {n: {"status": "ok"} for n in ("redis", "database", "whatsapp")}})
    )
    with (site / "metrics").open("w") as out:
        for i in range(METRICS_LINES):
            out.write(f'http_requests_total{{path="/p{i % 500}",code="{200 + i % 5}"}} {i}\n')
        out.write("queue_size 162\n")
    port, server = serve(site)
    try:
        health = HealthSource(HealthConfig(name="api", url=f"http://127.0.0.1:{port}/health"))
        rows = [await ticks_of(health, "GET /health, 3 components", "httpx, one client kept")]
        await health.close()
        prometheus = PrometheusSource(
            PrometheusConfig(
                name="app",
                url=f"http://127.0.0.1:{port}/metrics",
                metrics=['http_requests_total{code="500"}', "queue_size"],
            )
        )
        rows.append(await ticks_of(prometheus, f"{METRICS_LINES:,}-line metrics page, 2 selectors"))
        await prometheus.close()
        return rows
    finally:
        stop_process(server)


def serve(site: Path) -> tuple[int, subprocess.Popen[bytes]]:
    """Python's http.server on `site`, in its own process so that its CPU is not counted as ours."""
    import socket

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(site)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )

    def answers() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            return False

    wait_until(answers, timeout=10, what="http.server", proc=server)
    return port, server


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = psutil.virtual_memory().total / 1024**3
    return (
        f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB RAM, Linux {platform.release()}, "
        f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.2f} at the start"
    )


async def run_all(root: Path, big: bool) -> list[Row]:
    rows = await bench_redis(root)
    rows += await bench_postgres(root)
    rows += await bench_dispatch(root, big)
    rows += await bench_http(root)
    return rows


def main(big: bool) -> None:
    root = Path(tempfile.mkdtemp(prefix="opstui-bench-"))
    root.chmod(0o711)  # PostgreSQL runs as its own user when we are root
    where = machine()
    try:
        rows = asyncio.run(run_all(root, big))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"machine: {where}\n")
    print("| source | scenario | wall ms (median) | CPU ms (median) | notes |")
    print("|---|---|---:|---:|---|")
    for row in rows:
        print(f"| {row.source} | {row.scenario} | {row.wall_ms:.2f} | {row.cpu_ms:.2f} | {row.note} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="skip the 1 GB dispatch log")
    main(big=not parser.parse_args().quick)
