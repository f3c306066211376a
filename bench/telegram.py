"""Time from a PM2 crash to the Telegram request leaving the daemon: a real `opstui daemon` following a private PM2
daemon's pub.sock, and the fake Bot API (tests/telegram_api.py) noting when each sendMessage arrives.

Each app writes the time just before it exits with status 1; PM2 restarts it (it then idles), publishes the
exit on pub.sock, and the daemon's alert rule for restarts (set to fire on the first one, no grouping
window) queues a notification that the notifier sends at once.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

from tests.pm2_sandbox import PM2Sandbox, find_pm2
from tests.telegram_api import ALERTS_CHAT, TOKEN, FakeBotAPI

from bench._measure import Context, Result, SuiteRun

CRASH_ONCE = """
const fs = require('fs');
const stamp = process.argv[2];
if (fs.existsSync(stamp)) { setInterval(() => {}, 1000); } else {
  setTimeout(() => { fs.writeFileSync(stamp, String(Date.now())); process.exit(1); }, 1500);
}
"""
"""Crashes 1.5 s after its first start, then idles: one restart, one alert."""


def config(root: Path, sandbox: PM2Sandbox, api: FakeBotAPI) -> Path:
    path = root / "telegram.toml"
    path.write_text(
        f"""\
[general]
instance = "bench"
state_dir = "{root / "telegram-state"}"

[[pm2]]
home = "{sandbox.home}"

[alerts]
group_window = "0s"

[alerts.restart_loop]
restarts = 1

[telegram]
token = "{TOKEN}"
chat_id = {ALERTS_CHAT}
api_base = "{api.url}"

[report]
enabled = false
"""
    )
    return path


def wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(0.02)


def run(ctx: Context) -> SuiteRun:
    pm2, reason = find_pm2()
    if pm2 is None:
        return SuiteRun("telegram", [], {"skipped": f"cannot run PM2: {reason}"})
    root = ctx.root / "telegram"
    root.mkdir()
    sandbox = PM2Sandbox(pm2)
    latencies: list[float] = []
    with FakeBotAPI() as api:
        daemon: subprocess.Popen[bytes] | None = None
        try:
            sandbox.start(sandbox.app("idle", "setInterval(() => {}, 1000)\n"), "idle")
            log = root / "daemon.log"
            with log.open("wb") as out:
                daemon = subprocess.Popen(
                    [sys.executable, "-m", "opstui", "daemon", "-c", str(config(root, sandbox, api))],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            wait_for(lambda: b"daemon started" in log.read_bytes(), 30, "the daemon's start")
            time.sleep(2)  # its first reads are done and pub.sock is followed
            script = sandbox.app("crash-once", CRASH_ONCE)
            for n in range(ctx.pick(8, 2)):
                name, stamp = f"crasher-{n}", root / f"crashed-{n}"
                sandbox.start(script, name, "--", str(stamp))

                def arrived(name: str = name) -> bool:
                    return any(name in m.text for m in api.messages)

                wait_for(arrived, 30, f"the alert about {name}")
                message = next(m for m in api.messages if name in m.text)
                latencies.append(message.date * 1000 - int(stamp.read_text()))
                time.sleep(1.2)  # the notifier sends at most one message a second to a chat
        finally:
            if daemon is not None:
                daemon.terminate()
                daemon.wait(15)
            sandbox.close()
    values = {
        "median_ms": statistics.median(latencies),
        "max_ms": max(latencies),
        "min_ms": min(latencies),
        "crashes": len(latencies),
    }
    return SuiteRun("telegram", [Result("crash", "PM2 crash to the sendMessage request", values)])


def section(run: SuiteRun) -> str:
    if "skipped" in run.facts:
        return f"Not measured: {run.facts['skipped']}."
    v = run.results[0].values
    return f"""\
{v["crashes"]} crashes, one at a time: median {v["median_ms"]:.0f} ms, min {v["min_ms"]:.0f} ms, max
{v["max_ms"]:.0f} ms from the app's last act to the sendMessage request arriving at the Bot API.

That is with `alerts.group_window = "0s"`. By default alerts that fire within 10 s go out as one message, so
the first alert of an incident waits up to the group window (10 s) for its companions: that wait is chosen,
not a cost, and `group_window` sets it. The restart rule here fires on the first restart
(`alerts.restart_loop.restarts = 1`); by default it waits for 3 within 10 minutes."""
