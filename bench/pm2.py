"""PM2: reading the process list over rpc.sock vs spawning `pm2 jlist` (what Uptime Kuma does), with 20 processes
under a real PM2, and the time from a crash to the pushed facts.

Starts a private PM2 daemon (its own PM2_HOME in a temp dir, killed at the end) with node processes that idle.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import shutil
import statistics
import time

import psutil
from tests.pm2_sandbox import PM2Sandbox, find_pm2

from bench._measure import Context, Result, SuiteRun, time_calls
from bench.report import NOTE, TIMING, WHAT, Column, cell, table, times
from opstui.model import Facts
from opstui.sources._command import run_command
from opstui.sources.pm2 import PM2Client, PM2Source, read_jlist_output

PROCESSES = 20


def idle_apps(sandbox: PM2Sandbox, count: int, *, node: bool = True) -> None:
    """`count` apps that idle: node scripts, or (node=False) `sleep`, which PM2 runs without node (less memory)."""
    if node:
        script = str(sandbox.app("idle", "setInterval(() => {}, 1000)\n"))
        apps = [{"name": f"app-{n}", "script": script} for n in range(count)]
    else:
        apps = [
            {"name": f"app-{n}", "script": shutil.which("sleep"), "args": "86400", "interpreter": "none"}
            for n in range(count)
        ]
    ecosystem = sandbox.apps / f"apps-{count}.json"
    ecosystem.write_text(json.dumps({"apps": apps}))
    sandbox.run("start", str(ecosystem))


async def run(ctx: Context) -> SuiteRun:
    pm2, reason = find_pm2()
    if pm2 is None:
        return SuiteRun("pm2", [], {"skipped": f"cannot benchmark PM2: {reason}"})
    sandbox = PM2Sandbox(pm2)
    calls = ctx.pick(50, 10)
    try:
        idle_apps(sandbox, PROCESSES)
        daemon = psutil.Process(sandbox.daemon_pid())
        env = {**os.environ, "PM2_HOME": str(sandbox.home)}

        async def jlist() -> None:
            status, out, _ = await run_command([str(pm2), "jlist"], env=env)
            assert status == 0 and len(read_jlist_output(out.decode())) == PROCESSES

        client = PM2Client(sandbox.home)

        async def socket_call() -> None:
            assert len(await client.processes()) == PROCESSES

        async def one_shot() -> None:
            fresh = PM2Client(sandbox.home)
            try:
                assert len(await fresh.processes()) == PROCESSES
            finally:
                await fresh.close()

        source = PM2Source(home=sandbox.home, interval=5, timeout=4)

        async def tick() -> None:
            assert len((await source.collect()).processes) == PROCESSES

        rows: list[Result] = []
        for id, what, call, n, note in (
            ("jlist", "`pm2 jlist` (spawn, parse)", jlist, max(5, calls // 5), "what polling the CLI costs"),
            ("socket", "rpc.sock getMonitorData, kept connection", socket_call, calls, "what each poll costs"),
            ("one-shot", "rpc.sock connect + getMonitorData + close", one_shot, calls, "what `opstui check` pays"),
            ("tick", f"PM2Source tick (list, facts, {PROCESSES} error-log tails)", tick, calls, "the whole source"),
        ):
            before = sum(daemon.cpu_times()[:2])
            timing = await time_calls(call, calls=n, warmup=3)
            daemon_ms = (sum(daemon.cpu_times()[:2]) - before) * 1000 / (n + 3)
            values = {**timing.values(), "pm2_daemon_cpu_ms": daemon_ms}
            if call is jlist:
                values["cli_peak_rss_mib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            rows.append(Result(id, what, values, note))
        await client.close()
        await source.close()
        latencies = await crash_to_push(sandbox, ctx.pick(12, 4))
        version = sandbox.run("--version").stdout.strip()
    finally:
        sandbox.close()
    jlist_row, socket_row = rows[0], rows[1]

    def all_cpu(row: Result) -> float:
        """Every CPU millisecond a call causes: ours, the spawned CLI's and PM2's daemon's."""
        return float(row.values["cpu_mean_ms"] or 0) + float(row.values["pm2_daemon_cpu_ms"] or 0)

    facts = {
        "pm2_version": version,
        "processes": PROCESSES,
        "crash_to_push_ms": latencies,
        "cpu_ratio": all_cpu(jlist_row) / all_cpu(socket_row),
        "jlist_cpu_ms": all_cpu(jlist_row),
        "wall_ratio": float(jlist_row.values["wall_p50_ms"] or 0) / float(socket_row.values["wall_p50_ms"] or 1),
    }
    return SuiteRun("pm2", rows, facts)


CRASHER = """
const fs = require('fs');
setTimeout(() => { fs.writeFileSync(process.argv[2], String(Date.now())); process.exit(1); }, 400);
"""


async def crash_to_push(sandbox: PM2Sandbox, crashes: int) -> list[float]:
    """Milliseconds from a crash (the time the app wrote just before exiting) to the push that counted it."""
    stamp = sandbox.home / "crashed-at"
    source = PM2Source(home=sandbox.home, interval=3600, timeout=4)
    latencies: list[float] = []
    last = [0]
    enough = asyncio.Event()

    def pushed(facts: Facts) -> None:
        crasher = next((p for p in facts.processes if p.name == "crasher"), None)
        if crasher is not None and (crasher.restarts_total or 0) > last[0]:
            last[0] = crasher.restarts_total or 0
            latencies.append(time.time() * 1000 - int(stamp.read_text()))
            if len(latencies) >= crashes:
                enough.set()

    source.on_update = pushed
    await source.collect()
    # PM2 gives up on an app after 16 quick crashes in a row by default: let it keep restarting.
    app = sandbox.app("crasher", CRASHER)
    await asyncio.to_thread(sandbox.start, app, "crasher", "--max-restarts", "1000", "--", str(stamp))
    await asyncio.wait_for(enough.wait(), 60)
    await source.close()
    sandbox.run("delete", "crasher")
    return latencies


def section(run: SuiteRun) -> str:
    if "skipped" in run.facts:
        return f"Not measured: {run.facts['skipped']}."
    daemon: Column = ("PM2 daemon CPU ms per call", cell("pm2_daemon_cpu_ms", lambda v: f"{v:.1f}"), True)
    latencies = run.facts["crash_to_push_ms"]
    peak = run.value("jlist", "cli_peak_rss_mib")
    return f"""A private PM2 {run.facts["pm2_version"]} daemon with {run.facts["processes"]} idle node processes.

{table([WHAT, *TIMING, daemon, NOTE], run.results)}

Reading the list over the kept rpc.sock connection takes 1/{run.facts["wall_ratio"]:.0f} of the wall time of a
`pm2 jlist` spawn and 1/{run.facts["cpu_ratio"]:.0f} of all the CPU it causes (ours, the CLI's and PM2's daemon's):
{times(run.facts["cpu_ratio"])} cheaper, and no {peak:.0f} MiB node process each tick. Polling `pm2 jlist` every 2 s
would cost {run.facts["jlist_cpu_ms"] / 20:.1f} % of a core for the list alone. The caller's CPU is mostly
the allow-list parse of PM2's ~5 KiB-per-process records.

Crash to pushed facts (the app's last act, then PM2's exit event on pub.sock, then a fresh list pushed to the
engine), {len(latencies)} crashes: median {statistics.median(latencies):.0f} ms, max {max(latencies):.0f} ms. It is
dominated by the 20 ms the source waits after an event so that one read shows both the `exit` and the
relaunch's `online`."""
