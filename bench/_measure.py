"""What every benchmark shares: timing calls (wall and CPU), watching other processes (CPU share, RSS), the machine,
and the one result format the report is written from."""

from __future__ import annotations

import asyncio
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import psutil

Value = float | int | str | None


@dataclass(frozen=True)
class Result:
    """One row of a table in docs/performance.md: what was measured, its figures by name, and a note."""

    id: str
    """Stable within its suite ("reference", "daemon-2s"): targets and prose find rows by it."""
    what: str
    values: dict[str, Value]
    note: str = ""


@dataclass
class SuiteRun:
    """What one suite measured in one run, as stored in bench/results.json and rendered into the page."""

    suite: str
    results: list[Result]
    facts: dict[str, Any] = field(default_factory=dict)
    """Figures that are not rows (versions, counts, lists of latencies) for the suite's prose."""
    measured_at: str = ""
    machine: dict[str, Value] = field(default_factory=dict)
    seconds: float = 0.0

    def get(self, id: str) -> Result | None:
        return next((r for r in self.results if r.id == id), None)

    def value(self, id: str, name: str) -> Any:
        row = self.get(id)
        return None if row is None else row.values.get(name)


def percentile(samples: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation, as numpy's default does."""
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    at = (len(ordered) - 1) * q / 100
    low = int(at)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (at - low)


@dataclass(frozen=True)
class Timing:
    """Per-call milliseconds over `calls` calls: wall time, and CPU time of this process (every thread) plus the
    child processes it waited for (a `pm2 jlist` spawn)."""

    calls: int
    wall: list[float]
    cpu: list[float]

    def values(self, prefix: str = "") -> dict[str, Value]:
        return {
            f"{prefix}calls": self.calls,
            f"{prefix}wall_p50_ms": statistics.median(self.wall),
            f"{prefix}wall_p95_ms": percentile(self.wall, 95),
            f"{prefix}cpu_p50_ms": statistics.median(self.cpu),
            f"{prefix}cpu_p95_ms": percentile(self.cpu, 95),
            f"{prefix}cpu_mean_ms": statistics.fmean(self.cpu),
        }


def cpu_seconds() -> float:
    """CPU time of this process (all threads) and of its children that were waited for, user + system."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


async def time_calls(call: Callable[[], Awaitable[object]], *, calls: int, warmup: int = 1) -> Timing:
    """Run `call` `warmup` times, then `calls` times one after the other, timing each."""
    for _ in range(warmup):
        await call()
    walls, cpus = [], []
    for _ in range(calls):
        wall, cpu = time.perf_counter(), cpu_seconds()
        await call()
        cpus.append((cpu_seconds() - cpu) * 1000)
        walls.append((time.perf_counter() - wall) * 1000)
    return Timing(calls, walls, cpus)


def time_sync_calls(call: Callable[[], object], *, calls: int, warmup: int = 1) -> Timing:
    """`time_calls` for synchronous work."""

    async def run() -> None:
        call()

    return asyncio.run(time_calls(run, calls=calls, warmup=warmup))


async def time_once(call: Callable[[], Awaitable[Any]]) -> tuple[Any, Timing]:
    """One call's result and its timing (a first open, a cold start)."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    result = await call()
    return result, Timing(1, [(time.perf_counter() - wall) * 1000], [(cpu_seconds() - cpu) * 1000])


class Footprint:
    """CPU share and memory of another process over a window: start() at its beginning, stop() at its end."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.cpu_start = 0.0
        self.wall_start = 0.0
        self.rss_peak = 0

    def _cpu(self) -> float:
        times = self.process.cpu_times()
        return times.user + times.system

    def start(self) -> None:
        self.cpu_start, self.wall_start = self._cpu(), time.perf_counter()
        self.sample()

    def sample(self) -> None:
        """Call every few seconds: keeps the peak RSS seen in the window."""
        self.rss_peak = max(self.rss_peak, self.process.memory_info().rss)

    def stop(self) -> dict[str, Value]:
        cpu, wall = self._cpu() - self.cpu_start, time.perf_counter() - self.wall_start
        self.sample()
        memory = self.process.memory_full_info()
        return {
            "cpu_percent": 100.0 * cpu / wall,
            "cpu_seconds": cpu,
            "window_seconds": wall,
            "rss_mib": memory.rss / 2**20,
            "rss_peak_mib": self.rss_peak / 2**20,
            "uss_mib": memory.uss / 2**20,
        }


def machine() -> dict[str, Value]:
    """The machine and software a run was measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        textual = version("textual")
    except PackageNotFoundError:
        textual = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "textual": textual,
        "load_at_start": round(os.getloadavg()[0], 2),
    }


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


@dataclass
class Context:
    """What a suite is run with: quick (development: fewer calls, smaller worlds) or full, and a scratch dir."""

    quick: bool
    root: Path
    selected: tuple[str, ...] = ()
    """The suites this run measures."""

    def pick(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    def say(self, message: str) -> None:
        print(f"[bench] {message}", file=sys.stderr, flush=True)
