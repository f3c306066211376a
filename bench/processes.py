"""Per-tick cost of the process-side sources other than PM2: systemd, Docker, plain processes, logs, checks.

No systemd or Docker engine runs on the machines this was written on: systemd is read from a stand-in
`systemctl` (a shell script printing a recorded `systemctl show`), Docker from an HTTP server on a unix socket
replaying recorded Engine API answers. Their figures are opstui's side of the cost: spawning, parsing, HTTP.
"""

from __future__ import annotations

import asyncio
import re
import shlex
import subprocess
import sys
from pathlib import Path

import psutil
from tests.docker_replay import FakeEngine

from bench._measure import Context, Result, SuiteRun, time_calls
from bench.report import NOTE, TIMING, WHAT, table
from opstui.model import Level
from opstui.sources.base import Source
from opstui.sources.checks import BackupSource, EnvSource
from opstui.sources.docker import DockerSource
from opstui.sources.logs import LogSource
from opstui.sources.processes import ProcessesSource, Watched
from opstui.sources.systemd import SystemdSource

SYSTEMD_RECORDING = Path(__file__).parent.parent / "tests" / "recordings" / "systemd" / "1-running.txt"


def systemd_source(tmp: Path) -> SystemdSource:
    script = tmp / "systemctl"
    script.write_text(f"#!/bin/sh\nexec cat {shlex.quote(str(SYSTEMD_RECORDING))}\n")
    script.chmod(0o755)
    return SystemdSource(
        units=["bot.service", "crm-sync.service", "nosuch.service"], interval=5, timeout=3, command=[str(script)]
    )


def spawn_sleepers(count: int) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)", f"opstui-bench-{n}"])
        for n in range(count)
    ]


class Appender:
    """A log file of 10 MB that grows by 100 lines before each tick."""

    def __init__(self, path: Path) -> None:
        self.path = path
        line = "2024-05-14 10:32:01 ERROR Unhandled rejection: ECONNRESET while calling amoCRM token=abc123\n"
        path.write_text(line * (10 * 2**20 // len(line)))
        self.burst = line * 100

    def __call__(self) -> None:
        with self.path.open("a") as out:
            out.write(self.burst)


async def run(ctx: Context) -> SuiteRun:
    tmp = ctx.root / "process-sources"
    tmp.mkdir()
    docker = FakeEngine(tmp / "docker.sock")
    sleepers = spawn_sleepers(10)
    backups = tmp / "backups"
    backups.mkdir()
    for n in range(1000):
        (backups / f"db-{n:04d}.sql.gz").write_bytes(b"x" * 2048)
    (tmp / ".env").write_text("".join(f"VAR_{n}=value-{n}\n" for n in range(50)))
    appender = Appender(tmp / "app-error.log")
    steady = [Watched(f"w{n}", cmdline=re.compile(f"opstui-bench-{n}$")) for n in range(10)]
    missing = [Watched(f"m{n}", cmdline=re.compile(f"opstui-bench-missing-{n}$")) for n in range(10)]
    log = LogSource("app", path=appender.path, lines=20, interval=2, timeout=2)
    backup = BackupSource("db", path=str(backups / "*.gz"), max_age=3600, level=Level.CRITICAL, interval=60, timeout=5)
    env = EnvSource("app", required=["VAR_1", "VAR_49", "NOPE"], file=tmp / ".env", interval=60, timeout=5)
    cases: list[tuple[str, str, Source, str]] = [
        ("systemd", "systemd, 3 units", systemd_source(tmp), "one stand-in systemctl spawn (sh + cat) per tick"),
        (
            "docker",
            "Docker, 4 containers",
            DockerSource(socket=docker.path, interval=5, timeout=3),
            "list, 4 inspects, 2 stats; CPU includes the replay server (same process)",
        ),
        (
            "processes-found",
            "processes, 10 found",
            ProcessesSource(watch=steady, interval=5, timeout=3),
            "steady state: no sweep",
        ),
        (
            "processes-missing",
            "processes, 10 missing",
            ProcessesSource(watch=missing, interval=5, timeout=3),
            "one process-table sweep",
        ),
        ("log", "log tail, +100 lines a tick", log, "10 MB file, read incrementally"),
        ("backup", "backup, 1000 files", backup, "glob, stat each"),
        ("env", "env, 50-line .env", env, ""),
    ]
    rows: list[Result] = []
    try:
        await asyncio.sleep(0.5)  # let the sleepers start
        for id, what, source, note in cases:

            async def tick(source: Source = source) -> None:
                if source is log:
                    appender()
                await source.collect()

            timing = await time_calls(tick, calls=ctx.pick(50, 10), warmup=3)
            rows.append(Result(id, what, timing.values(), note))
            await source.close()
    finally:
        docker.close()
        for proc in sleepers:
            proc.kill()
            proc.wait()
    return SuiteRun("processes", rows, {"host_processes": len(psutil.pids())})


def section(run: SuiteRun) -> str:
    return f"""\
One tick of each; about {run.facts["host_processes"]} processes on the host.

{table([WHAT, *TIMING, NOTE], run.results)}

No systemd or Docker engine runs on this machine: systemd is read from a stand-in `systemctl` printing a
recorded `systemctl show`, Docker from an HTTP server replaying recorded Engine API answers, so those rows are
opstui's side only (a real `systemctl show` adds its D-Bus round trip, a real engine its stats collection).
A plain process that is found once costs no sweep of the process table afterwards; a sweep happens only
while some watched process is missing, and one sweep serves every entry."""
