"""Memory over a long run: RSS and tracemalloc's biggest growth over thousands of engine ticks against the demo world.

The engine reads the demo world's sources (`collect_once`, the alert rules on it) tick after tick. Its clock
advances 2 s a tick, so 1,500 ticks are 50 minutes of history, series pruning and alert lifecycles. Growth
is counted after a warm-up longer than the history a series keeps (360 points), once everything bounded is full.
"""

from __future__ import annotations

import gc
import sys
import time
import tracemalloc
from pathlib import Path

import psutil

from bench._measure import Context, Result, SuiteRun
from opstui.alerts import attach_alerting
from opstui.config import load_config
from opstui.demo import DemoWorld
from opstui.engine import HISTORY_POINTS, build_engine


def where(frame: str) -> str:
    """A traceback line without this checkout's or the environment's directories."""
    for prefix in (*sys.path[::-1], str(Path(__file__).resolve().parent.parent)):
        if prefix and frame.startswith(prefix.rstrip("/") + "/"):
            return frame[len(prefix.rstrip("/")) + 1 :]
    return frame


class SteppedClock:
    """2 s later at every tick."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def run(ctx: Context) -> SuiteRun:
    warmup, ticks = ctx.pick(HISTORY_POINTS + 140, 100), ctx.pick(1500, 200)
    process = psutil.Process()
    with DemoWorld() as world:
        config = load_config(world.config_path)
        clock = SteppedClock()
        engine = build_engine(config, clock=clock)
        attach_alerting(engine, config)

        async def tick() -> None:
            clock.now += 2.0
            await engine.collect_once()

        try:
            for _ in range(warmup):
                await tick()
            gc.collect()
            rss_start = process.memory_info().rss
            tracemalloc.start(5)
            before = tracemalloc.take_snapshot()
            started = time.perf_counter()
            for _ in range(ticks):
                await tick()
            seconds = time.perf_counter() - started
            gc.collect()
            after = tracemalloc.take_snapshot()
            traced = tracemalloc.get_tracemalloc_memory()
            rss_end = process.memory_info().rss - traced
            traced_now, _ = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        finally:
            await engine.stop()
    growth = [s for s in after.compare_to(before, "lineno") if s.size_diff > 0][:5]
    top = [
        {"where": where(str(s.traceback[0])), "kib": s.size_diff / 1024, "blocks": s.count_diff}
        for s in growth
        if s.traceback
    ]
    values = {
        "ticks": ticks,
        "warmup": warmup,
        "rss_start_mib": rss_start / 2**20,
        "rss_end_mib": rss_end / 2**20,
        "rss_growth_kib": (rss_end - rss_start) / 1024,
        "traced_growth_kib": traced_now / 1024,
        "per_tick_bytes": traced_now / ticks,
        "seconds": seconds,
    }
    return SuiteRun(
        "leak", [Result("engine", f"{ticks:,} engine ticks after {warmup} warm-up ticks", values)], {"top": top}
    )


def section(run: SuiteRun) -> str:
    v = run.results[0].values
    lines = "\n".join(f"| `{t['where']}` | {t['kib']:.1f} KiB | {t['blocks']} |" for t in run.facts["top"])
    return f"""\
{v["ticks"]:,} ticks after {v["warmup"]} warm-up ticks ({v["seconds"]:.0f} s with tracemalloc on): RSS went from
{v["rss_start_mib"]:.1f} MiB to {v["rss_end_mib"]:.1f} MiB (tracemalloc's own memory taken out), and what was
allocated during those ticks and is still alive at the end totals {v["traced_growth_kib"]:.0f} KiB, about
{v["per_tick_bytes"]:.0f} bytes a tick. Where the survivors were allocated (tracemalloc, by line):

| where | still alive | blocks |
|---|---:|---:|
{lines}"""
