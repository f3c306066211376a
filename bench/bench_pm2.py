"""PM2: reading the process list over rpc.sock vs spawning `pm2 jlist`, with 20 processes under a real PM2.

    uv run python -m bench.bench_pm2 [--processes 20] [--calls 50]

Starts a private PM2 daemon (its own PM2_HOME in a temp dir, killed at the end) with node processes that idle.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import time

import psutil
from tests.pm2_sandbox import PM2Sandbox, find_pm2

from bench._measure import Row, machine, measure, table
from opstui.model import Facts
from opstui.sources._command import run_command
from opstui.sources.pm2 import PM2Client, PM2Source, read_jlist_output


async def run(processes: int, calls: int) -> None:
    pm2, reason = find_pm2()
    if pm2 is None:
        raise SystemExit(f"cannot benchmark PM2: {reason}")
    sandbox = PM2Sandbox(pm2)
    try:
        apps = [
            {"name": f"app-{n}", "script": str(sandbox.app(f"app-{n}", "setInterval(() => {}, 1000)\n"))}
            for n in range(processes)
        ]
        ecosystem = sandbox.apps / "apps.json"
        ecosystem.write_text(json.dumps({"apps": apps}))
        sandbox.run("start", str(ecosystem))
        daemon = psutil.Process(sandbox.daemon_pid())
        env = {**os.environ, "PM2_HOME": str(sandbox.home)}

        async def jlist() -> None:
            status, out, _ = await run_command([str(pm2), "jlist"], env=env)
            assert status == 0 and len(read_jlist_output(out.decode())) == processes

        client = PM2Client(sandbox.home)

        async def socket_call() -> None:
            assert len(await client.processes()) == processes

        async def one_shot() -> None:
            fresh = PM2Client(sandbox.home)
            try:
                assert len(await fresh.processes()) == processes
            finally:
                await fresh.close()

        source = PM2Source(home=sandbox.home, interval=5, timeout=4)

        async def tick() -> None:
            assert len((await source.collect()).processes) == processes

        rows: list[Row] = []
        for what, call, n, note in (
            ("`pm2 jlist` (spawn, parse)", jlist, max(5, calls // 5), "what polling the CLI costs"),
            ("rpc.sock getMonitorData, kept connection", socket_call, calls, "what each poll costs"),
            ("rpc.sock connect + getMonitorData + close", one_shot, calls, "what `opstui check` pays"),
            ("PM2Source tick (list, facts, 20 error-log tails)", tick, calls, "the whole source"),
        ):
            before = sum(daemon.cpu_times()[:2])
            row = await measure(what, call, calls=n, note=note)
            daemon_ms = (sum(daemon.cpu_times()[:2]) - before) * 1000 / (n + min(3, n))
            note = f"{row.note}; PM2 daemon CPU {daemon_ms:.1f} ms per call"
            if call is jlist:
                peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
                note += f"; a pm2 CLI process peaks at {peak:.0f} MiB RSS"
            rows.append(Row(row.what, row.calls, row.wall_median_ms, row.wall_p90_ms, row.cpu_ms, note))
        await client.close()
        await source.close()
        latencies = await crash_to_push(sandbox)
        print(f"PM2 {sandbox.run('--version').stdout.strip()}, {processes} processes; {machine()}\n")
        print(table(rows))
        print(
            f"\nCrash to pushed facts (the app's last act, then PM2's exit event on pub.sock, then a fresh list "
            f"pushed to the engine), {len(latencies)} crashes: median {statistics.median(latencies):.0f} ms, "
            f"max {max(latencies):.0f} ms."
        )
    finally:
        sandbox.close()


CRASHER = """
const fs = require('fs');
setTimeout(() => { fs.writeFileSync(process.argv[2], String(Date.now())); process.exit(1); }, 400);
"""


async def crash_to_push(sandbox: PM2Sandbox, crashes: int = 12) -> list[float]:
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
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=20)
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(run(args.processes, args.calls))


if __name__ == "__main__":
    main()
