"""Per-tick collection cost of whole deployments, through the real Engine: a reference one (20 PM2 processes, 50
Redis queues of mixed kinds, a lock table, a dispatch log, three health endpoints, the host) and a large one
(200 PM2 processes, 1,000 queues, a 1 GB dispatch log).

Everything is real: the embedded Redis and PostgreSQL, a private PM2 daemon (plain processes watched by command
line when node is not installed), three `http.server` processes, a config file loaded by `load_config` and
an engine from `build_engine` with the alert rules on it, as the TUI runs them. A tick is `collect_once()`:
every source at once, then one snapshot built and judged. CPU is this process's (every thread); the servers'
and PM2's work is in the wall time only.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.pm2_sandbox import PM2Sandbox, find_pm2

from bench._measure import Context, Result, SuiteRun, Value, percentile, time_calls, time_once
from bench.report import NOTE, TIMING, WHAT, Column, table
from bench.sources import fill_redis, serve, write_health, write_log
from opstui.alerts import attach_alerting
from opstui.config import load_config
from opstui.demo.backend import LOCK_KEY, LOCK_TABLE
from opstui.demo.servers import EmbeddedPostgres, EmbeddedRedis, stop_process
from opstui.engine import build_engine

MB = 1024 * 1024


@dataclass(frozen=True)
class Deployment:
    id: str
    processes: int
    queues: int
    log_bytes: int
    log_label: str
    ticks: int


REFERENCE = Deployment("reference", 20, 50, 10 * MB, "10 MB", 100)
LARGE = Deployment("large", 200, 1000, 1024 * MB, "1 GB", 40)


@dataclass
class World:
    """The servers both deployments read: Redis, PostgreSQL with the lock table, three health endpoints."""

    redis: EmbeddedRedis
    postgres: EmbeddedPostgres
    health_ports: list[int]


@contextlib.contextmanager
def world(root: Path) -> Iterator[World]:
    redis = EmbeddedRedis(root / "ticks-redis").start()
    postgres = EmbeddedPostgres(root / "ticks-postgres").start()
    servers: list[subprocess.Popen[bytes]] = []
    try:
        postgres.psql(LOCK_TABLE)
        postgres.psql(
            f"INSERT INTO batch_locks (lock_key, instance_id, expires_at) VALUES ('{LOCK_KEY}', 'batch@bench', "
            "now() + interval '1 hour')"
        )
        ports = []
        for name in ("api", "webhooks", "admin"):
            site = root / f"site-{name}"
            site.mkdir()
            write_health(site / "health")
            port, server = serve(site)
            ports.append(port)
            servers.append(server)
        yield World(redis, postgres, ports)
    finally:
        for server in servers:
            stop_process(server)
        postgres.stop()
        redis.stop()


@contextlib.contextmanager
def processes(root: Path, count: int) -> Iterator[tuple[str, str]]:
    """`count` processes to watch, and the config section that watches them, and what they are."""
    pm2, reason = find_pm2()
    if pm2 is not None:
        from bench.pm2 import idle_apps

        sandbox = PM2Sandbox(pm2)
        try:
            # Many node processes would need gigabytes: the large deployment's are `sleep`s PM2 runs without node.
            idle_apps(sandbox, count, node=count <= REFERENCE.processes)
            yield (
                f'\n[[pm2]]\nhome = "{sandbox.home}"\ninterval = "2s"\n',
                f"{count} PM2 processes",
            )
        finally:
            sandbox.close()
        return
    sleepers = [
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(86400)", f"opstui-ticks-{n}"])
        for n in range(count)
    ]
    try:
        watch = "".join(
            f"\n[[processes.watch]]\nname = \"p{n}\"\ncmdline = 'opstui-ticks-{n}$'\n" for n in range(count)
        )
        yield f'\n[processes]\ninterval = "2s"\n{watch}', f"{count} plain processes ({reason})"
    finally:
        for proc in sleepers:
            proc.kill()
            proc.wait()


def config_text(root: Path, servers: World, deployment: Deployment, processes_section: str) -> str:
    queues = fill_redis(servers.redis.url, deployment.queues)
    log = root / f"dispatch-{deployment.id}.log"
    write_log(log, deployment.log_bytes, 100 * 1024)
    parts = [
        f'[general]\ninstance = "bench"\nstate_dir = "{root / "ticks-state"}"\n',
        '\n[host]\ninterval = "2s"\n',
        processes_section,
        f'\n[[redis]]\nname = "main"\nurl = "{servers.redis.url}"\ninterval = "2s"\n',
        *(f'\n[[redis.queues]]\nname = "{q.name}"\nkind = "{q.kind}"\n' for q in queues),
        f'\n[[postgres]]\nname = "main"\ndsn = "{servers.postgres.dsn}"\ninterval = "2s"\n',
        f'\n[[postgres.locks]]\nname = "daily batch"\nkey = "{LOCK_KEY}"\nexpected_holder = "batch@*"\n',
        f'\n[[dispatch]]\nname = "daily report"\npath = "{log}"\ninterval = "2s"\n',
        *(
            f'\n[[health]]\nname = "{name}"\nurl = "http://127.0.0.1:{port}/health"\ninterval = "2s"\n'
            for name, port in zip(("api", "webhooks", "admin"), servers.health_ports, strict=True)
        ),
    ]
    return "".join(parts)


async def measure(ctx: Context, root: Path, servers: World, deployment: Deployment) -> list[Result]:
    with processes(root, deployment.processes) as (section, watched):
        path = root / f"{deployment.id}.toml"
        path.write_text(config_text(root, servers, deployment, section))
        config = load_config(path)
        engine = build_engine(config)
        attach_alerting(engine, config)
        try:
            snapshot, cold = await time_once(engine.collect_once)
            failed = {name: s.error for name, s in snapshot.sources.items() if not s.ok}
            assert not failed, f"{deployment.id}: sources failed: {failed}"
            durations: dict[str, list[float]] = {name: [] for name in snapshot.sources}

            async def tick() -> None:
                for name, status in (await engine.collect_once()).sources.items():
                    durations[name].append(status.duration_ms or 0.0)

            steady = await time_calls(tick, calls=ctx.pick(deployment.ticks, 10))
        finally:
            await engine.stop()
    what = (
        f"{watched}, {deployment.queues:,} Redis queues, a lock table, a {deployment.log_label} dispatch log, "
        "3 health endpoints, the host"
    )
    counts: dict[str, Value] = {
        "items": len(snapshot.processes) + len(snapshot.queues) + len(snapshot.locks) + len(snapshot.health),
    }
    rows = [
        Result(f"{deployment.id}-cold", f"{deployment.id}: first `collect_once` (`opstui check`)", cold.values()),
        Result(deployment.id, f"{deployment.id}: steady tick", {**steady.values(), **counts}, what),
    ]
    for name, samples in durations.items():
        kind = snapshot.sources[name].kind
        rows.append(
            Result(
                f"{deployment.id}-source-{name}",
                name,
                {"kind": kind, "wall_p50_ms": percentile(samples, 50), "wall_p95_ms": percentile(samples, 95)},
            )
        )
    return rows


async def run(ctx: Context) -> SuiteRun:
    root = ctx.root / "ticks"
    root.mkdir()
    deployments = [REFERENCE] if ctx.quick else [REFERENCE, LARGE]
    rows: list[Result] = []
    with world(root) as servers:
        for deployment in deployments:
            ctx.say(f"ticks: {deployment.id}")
            rows += await measure(ctx, root, servers, deployment)
            for log in root.glob("dispatch-*.log"):
                log.unlink()
    return SuiteRun("ticks", rows, {"pm2": find_pm2(install=False)[0] is not None})


def section(run: SuiteRun) -> str:
    ticks = [r for r in run.results if "-source-" not in r.id]
    parts = [table([WHAT, *TIMING, NOTE], ticks)]
    for deployment in (REFERENCE, LARGE):
        sources = [r for r in run.results if r.id.startswith(f"{deployment.id}-source-")]
        if not sources:
            continue
        columns: list[Column] = [
            ("source", lambda r: r.what, False),
            ("kind", lambda r: str(r.values["kind"]), False),
            ("wall p50 ms", lambda r: f"{r.values['wall_p50_ms']:.2f}", True),
            ("wall p95 ms", lambda r: f"{r.values['wall_p95_ms']:.2f}", True),
        ]
        parts.append(f"Where a {deployment.id} tick's time goes (each source's own duration; they run at once):")
        parts.append(table(columns, sources))
    return "\n\n".join(parts)
