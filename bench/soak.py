"""The daemon's soak: a simulated day of ticks on a fast clock, with faults injected, watching memory and delivery.

Run: uv run python -m bench.soak [--hours 24] [--step 10]
It runs the daemon's own parts (the engine with real sources, the alert processor persisting to SQLite, the
notifier against the fake Bot API, per-minute samples, the hourly prune, the daily report) on a clock that
jumps `step` seconds per tick, so a day takes minutes. Faults, on a fixed schedule: Redis killed and started
again, Telegram answering 500 or 429 or dropping connections, the health endpoint sending garbage, the
dispatch log rotated and truncated, the state database read-only, workers crash-looping and stopping, the
queue backing up. It prints the resident memory at the start, middle and end, the ticks, the faults, and the
delivery check: every message Telegram received is recorded in the outbox exactly once and nothing is left
waiting, and how many tracebacks the daemon's parts logged (none, or something crashed inside). The fault
schedule repeats every few simulated hours; `scale` shrinks it (tests/test_soak.py runs two simulated hours of
it at half scale and asserts the same, never the timing or the memory).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import platform
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psutil
from tests.telegram_api import ALERTS_CHAT, TOKEN, FakeBotAPI

from opstui.alerts import Alerting
from opstui.alerts.runtime import prune_history
from opstui.config import Config
from opstui.demo.servers import EmbeddedRedis
from opstui.engine import Engine
from opstui.model import Facts, ProcessInfo
from opstui.notify import Notifier
from opstui.report import DailyReport, SampleRecorder
from opstui.sources import build_sources
from opstui.sources.base import Source
from opstui.state import StateStore

START = 1_800_000_000.0
"""2027-01-15 08:00 UTC, a Friday."""
HOUR = 3600.0
WORKERS = ("api", "worker", "batch", "sync", "bot", "cron")


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class Workers(Source):
    """The supervised processes, as a process source reports them; the soak decides how they behave."""

    kind = "pm2"

    def __init__(self, clock: Clock) -> None:
        super().__init__("pm2", interval=5.0, timeout=3.0)
        self.clock = clock
        self.restarts = dict.fromkeys(WORKERS, 0)
        self.stopped: set[str] = set()
        self.looping: set[str] = set()
        self._last_restart = dict.fromkeys(WORKERS, 0.0)

    async def collect(self) -> Facts:
        now = self.clock()
        for name in self.looping:
            if now - self._last_restart[name] >= 60:  # a crash-loop restarts once a minute
                self.restarts[name] += 1
                self._last_restart[name] = now
        return Facts(
            processes=tuple(
                ProcessInfo(
                    key=f"pm2:{name}",
                    name=name,
                    manager="pm2",
                    status="stopped" if name in self.stopped else "online",
                    source=self.name,
                    restarts_total=self.restarts[name],
                    rss_bytes=80_000_000 + 1_000 * (int(now) % 1000),
                    cpu_percent=1.0,
                )
                for name in WORKERS
            )
        )


class Health:
    """A /health that answers well, or with garbage while `garbage` is set."""

    def __init__(self) -> None:
        self.garbage = False
        health = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = b"\x00\xffnot json at all" if health.garbage else b'{"status":"ok","checks":{"db":"up"}}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/health"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Result:
    hours: float
    step: float
    ticks: int = 0
    wall: float = 0.0
    rss: list[tuple[str, int]] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    messages: int = 0
    recorded: int = 0
    """Messages (by Telegram's message id) the outbox recorded as sent."""
    duplicated: int = 0
    """Messages Telegram received that the outbox does not know: sent again after an earlier copy went out."""
    lost: int = 0
    """Message ids the outbox recorded that Telegram never received."""
    waiting: int = 0
    failed: int = 0
    tracebacks: int = 0
    """Log records with an exception attached: a part of the daemon that crashed inside (and was kept going)."""
    warnings: int = 0
    fired: int = 0
    resolved: int = 0
    reports: int = 0


def _dispatch_run(name: str, processed: int, sent: int) -> str:
    lines = [{"where": "dailyReport", "phase": "start", "run": name}]
    lines += [{"where": "processUser", "status": "completed"}] * processed
    lines += [{"where": "sendToMonitoringBot", "phase": "after_send", "success": True}] * sent
    return "".join(json.dumps(line) + "\n" for line in lines)


class Soak:
    def __init__(
        self, root: Path, *, hours: float, step: float, scale: float, progress: Callable[[str], None] | None
    ) -> None:
        self.root = root
        self.hours = hours
        self.step = step
        self.scale = scale
        self.progress = progress
        self.clock = Clock(START)
        self.result = Result(hours=hours, step=step)

    async def run(self) -> Result:
        counter = _Counting(self.result)
        logging.getLogger().addHandler(counter)
        self.redis = EmbeddedRedis(self.root / "redis").start()
        self.health = Health()
        self.dispatch_log = self.root / "dispatch.log"
        self.dispatch_log.write_text(_dispatch_run("first", 10, 10))
        self.api = FakeBotAPI(clock=self.clock).__enter__()
        try:
            return await self._run()
        finally:
            self.api.__exit__(None, None, None)
            self.health.close()
            self.redis.stop()
            logging.getLogger().removeHandler(counter)

    def _config(self) -> Config:
        return Config.model_validate(
            {
                "general": {"instance": "soak", "timezone": "UTC", "state_dir": str(self.root / "state")},
                "host": {"top_processes": 5},
                "redis": [
                    {
                        "name": "main",
                        "url": self.redis.url,
                        "timeout": "0.5s",
                        "queues": [{"name": "incoming", "key": "queue:incoming", "warn": 100, "crit": 1000}],
                    }
                ],
                "dispatch": [{"name": "report", "path": str(self.dispatch_log)}],
                "health": [{"name": "api", "url": self.health.url, "timeout": "1s"}],
                "alerts": {"memory": {"host_warning": 99.0, "host_critical": 99.5}, "dispatch": {"settle": "0s"}},
                "telegram": {"token": TOKEN, "chat_id": ALERTS_CHAT, "api_base": self.api.url, "timeout": "1s"},
            }
        )

    async def _run(self) -> Result:
        import redis as redis_py

        config = self._config()
        store = StateStore.in_dir(config.state_dir())
        workers = Workers(self.clock)
        engine = Engine([*build_sources(config), workers], instance="soak", clock=self.clock)
        alerting = Alerting(config, store=store, deliver=True, clock=self.clock)
        notifier = Notifier(config.telegram, store, tz=ZoneInfo("UTC"), clock=self.clock, jitter=lambda: 1.0)
        alerting.extra_checks = lambda: [c] if (c := notifier.check()) is not None else []
        engine.processors.append(alerting)
        samples = SampleRecorder(store)
        engine.subscribe(samples)
        report = DailyReport(config, store, lambda: engine.snapshot, clock=self.clock)
        queue = redis_py.Redis.from_url(self.redis.url)
        ticks = int(self.hours * HOUR / self.step)
        warm = min(100, ticks // 8)
        delivered: list[int] = []
        began = time.monotonic()
        try:
            for tick in range(ticks):
                self.clock.t = START + tick * self.step
                self._faults(tick, workers, store, queue)
                for source in engine.sources:
                    await engine.run_source(source)
                engine.flush()
                await self._deliver(notifier)
                if tick % int(HOUR / self.step) == 0 and tick:
                    prune_history(store, self.clock(), keep_samples=config.report.keep_samples)
                    self._keep_ids(delivered)
                if self._crossed(tick, 8 * HOUR):
                    report.run()
                    self.result.reports += 1
                    notifier.wake()
                if tick == warm or (tick + 1) % (ticks // 4) == 0:  # after warming up, then each quarter
                    gc.collect()
                    label = "start" if tick == warm else f"{(tick + 1) * self.step / HOUR:g} h"
                    self.result.rss.append((label, psutil.Process().memory_info().rss))
                if self.progress and tick % int(HOUR / self.step) == 0:
                    self.progress(f"{tick * self.step / HOUR:5.1f} h simulated, {time.monotonic() - began:6.1f} s")
            # Everything healthy again: let what waits go out, then account for every message.
            self.api.outage()
            store._db.execute("PRAGMA query_only = 0")
            for _ in range(40):
                self.clock.t += 30
                await self._deliver(notifier)
            self._keep_ids(delivered)
        finally:
            samples.flush()
            await notifier.bot.aclose()
            await engine.stop()
            queue.close()
        self.result.ticks = ticks
        self.result.wall = time.monotonic() - began
        self._account(store, delivered)
        store.close()
        return self.result

    def _crossed(self, tick: int, at: float) -> bool:
        """Whether this tick is the first at or after `at` seconds past the start of a simulated day."""
        seconds = tick * self.step
        return (seconds - at) % 86400 < self.step and seconds >= at

    async def _deliver(self, notifier: Notifier) -> None:
        for _ in range(100):
            next_at = await notifier.deliver_due()
            if next_at is None or next_at > self.clock():
                return

    def _keep_ids(self, delivered: list[int]) -> None:
        # The fake API keeps every call; keep only the message ids, so the soak measures the daemon's memory.
        with self.api.lock:
            delivered.extend(m.message_id for m in self.api.messages)
            self.api.messages.clear()
            self.api.calls.clear()

    def _faults(self, tick: int, workers: Workers, store: StateStore, queue: Any) -> None:
        minute = tick * self.step / 60
        hourly = int(HOUR / self.step)

        def at(every_hours: float, offset_minutes: float) -> bool:
            period = max(1, int(every_hours * self.scale * hourly))
            return tick % period == int(offset_minutes * self.scale * 60 / self.step)

        faults = self.result.faults
        if at(3, 30):
            self.redis.kill()
            faults["Redis killed"] += 1
        if at(3, 40):
            self.redis = EmbeddedRedis(self.root / "redis", port=self.redis.port).start()
        if at(4, 10):
            self.api.outage(status=500, description="Internal Server Error")
            faults["Telegram 500 for 20 minutes"] += 1
        if at(8, 100):
            self.api.outage(status=429, description="Too Many Requests: retry after 60", parameters={"retry_after": 60})
            faults["Telegram 429 for 20 minutes"] += 1
        if at(6, 200):
            self.api.outage(drop=True)
            faults["Telegram dropping connections for 20 minutes"] += 1
        if at(4, 30) or at(8, 120) or at(6, 220):
            self.api.outage()
        if at(2, 15):
            self.health.garbage = True
            faults["health endpoint sending garbage for 5 minutes"] += 1
        if at(2, 20):
            self.health.garbage = False
        if at(6, 50):
            self.dispatch_log.rename(self.dispatch_log.with_suffix(".log.1"))
            self.dispatch_log.write_text(_dispatch_run(f"rotated {tick}", 12, 12))
            faults["dispatch log rotated"] += 1
        if at(6, 170):
            with self.dispatch_log.open("w") as log:  # copytruncate, and a run whose counts disagree
                log.write(_dispatch_run(f"truncated {tick}", 9, 7))
            faults["dispatch log truncated"] += 1
        if at(6, 190):
            with self.dispatch_log.open("a") as log:
                log.write(_dispatch_run(f"good {tick}", 9, 9))
        if at(6, 140):
            store._db.execute("PRAGMA query_only = 1")
            faults["state database read-only for 5 minutes"] += 1
        if at(6, 145):
            store._db.execute("PRAGMA query_only = 0")
        name = WORKERS[int(minute // (120 * self.scale)) % len(WORKERS)]
        if at(2, 60):
            workers.looping.add(name)
            faults["worker crash-looping for 15 minutes"] += 1
        if at(2, 75):
            workers.looping.discard(name)
        if at(2, 90):
            workers.stopped.add(name)
            faults["worker stopped for 5 minutes"] += 1
        if at(2, 95):
            workers.stopped.discard(name)
        if at(4, 100):
            with_retry(lambda: queue.rpush("queue:incoming", *range(150)))
            faults["queue backed up for 10 minutes"] += 1
        if at(4, 110):
            with_retry(lambda: queue.delete("queue:incoming"))

    def _account(self, store: StateStore, delivered: list[int]) -> None:
        # Every row of a message records its id (a message lists several alerts); a message Telegram took twice
        # would have two ids, one of them recorded nowhere.
        recorded = {
            int(part)
            for row in store.query("SELECT message_ids FROM outbox WHERE status = 'sent'")
            for part in row["message_ids"].split()
        }
        received = set(delivered)
        self.result.messages = len(delivered)
        self.result.recorded = len(recorded)
        self.result.duplicated = len(received - recorded) + len(delivered) - len(received)
        self.result.lost = len(recorded - received)
        self.result.waiting = int(store.query("SELECT count(*) FROM outbox WHERE status = 'pending'")[0][0])
        self.result.failed = int(store.query("SELECT count(*) FROM outbox WHERE status = 'failed'")[0][0])
        events = Counter(row["event"] for row in store.query("SELECT event FROM alert_log"))
        self.result.fired, self.result.resolved = events["fired"], events["resolved"]


class _Counting(logging.Handler):
    def __init__(self, result: Result) -> None:
        super().__init__(logging.WARNING)
        self.result = result

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.exc_text:
            self.result.tracebacks += 1
        else:
            self.result.warnings += 1


def with_retry(call: Callable[[], object]) -> None:
    """A Redis write of the simulated backend's; Redis may be down at that moment, as it would be."""
    import redis as redis_py

    with contextlib.suppress(redis_py.ConnectionError):
        call()


def soak(
    hours: float = 24.0, step: float = 10.0, *, scale: float = 1.0, progress: Callable[[str], None] | None = None
) -> Result:
    with tempfile.TemporaryDirectory(prefix="opstui-soak-") as root:
        path = Path(root)
        path.chmod(0o711)
        return asyncio.run(Soak(path, hours=hours, step=step, scale=scale, progress=progress).run())


def report(result: Result) -> str:
    mib = 1024 * 1024
    rss = " / ".join(f"{value / mib:.1f}" for _, value in result.rss)
    when = " / ".join(label for label, _ in result.rss)
    lines = [
        f"{platform.machine()}, {psutil.cpu_count()} cores, Python {platform.python_version()}",
        "",
        "| what | value |",
        "|---|---|",
        f"| simulated | {result.hours:g} h in {result.ticks} ticks of {result.step:g} s, "
        f"{result.wall:.0f} s of wall time |",
        f"| resident memory (MiB) at {when} | {rss} |",
        f"| faults injected | {sum(result.faults.values())} |",
        f"| alerts fired / resolved | {result.fired} / {result.resolved} |",
        f"| daily reports | {result.reports} |",
        f"| messages Telegram received | {result.messages} |",
        f"| recorded as sent in the outbox | {result.recorded} |",
        f"| duplicated / lost / still waiting / given up | "
        f"{result.duplicated} / {result.lost} / {result.waiting} / {result.failed} |",
        f"| warnings logged / tracebacks logged | {result.warnings} / {result.tracebacks} |",
        "",
        "| fault | times |",
        "|---|---|",
        *(f"| {what} | {count} |" for what, count in sorted(result.faults.items())),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=24.0, help="simulated hours (default 24)")
    parser.add_argument("--step", type=float, default=10.0, help="simulated seconds per tick (default 10)")
    args = parser.parse_args()
    logging.getLogger().setLevel(logging.WARNING)  # counted by the soak, not printed
    result = soak(args.hours, args.step, progress=lambda line: print(line, flush=True))
    print(report(result))


if __name__ == "__main__":
    main()
