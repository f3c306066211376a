"""Timing for the benchmarks: wall time per call, CPU per call (ours and our children's), a markdown table."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class Row:
    what: str
    calls: int
    wall_median_ms: float
    wall_p90_ms: float
    cpu_ms: float
    """CPU per call, this process plus the processes it ran (e.g. a `pm2 jlist`), user + system."""
    note: str = ""


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


async def measure(what: str, call: Callable[[], Awaitable[object]], *, calls: int, note: str = "") -> Row:
    """Run `call` a few times to warm up, then `calls` times, one after the other."""
    for _ in range(min(3, calls)):
        await call()
    walls = []
    cpu_before = _cpu_seconds()
    for _ in range(calls):
        started = time.perf_counter()
        await call()
        walls.append((time.perf_counter() - started) * 1000)
    cpu = (_cpu_seconds() - cpu_before) * 1000 / calls
    walls.sort()
    return Row(what, calls, statistics.median(walls), walls[int(len(walls) * 0.9) - 1], cpu, note)


def table(rows: list[Row]) -> str:
    lines = [
        "| what | calls | wall median | wall p90 | CPU per call | note |",
        "|---|---:|---:|---:|---:|---|",
    ]
    lines += [
        f"| {r.what} | {r.calls} | {r.wall_median_ms:.2f} ms | {r.wall_p90_ms:.2f} ms | {r.cpu_ms:.2f} ms | {r.note} |"
        for r in rows
    ]
    return "\n".join(lines)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = psutil.virtual_memory().total / 2**30
    return (
        f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GiB, Linux {platform.release()}, Python {sys.version.split()[0]}"
    )
