"""The headless daemon: the same engine as the TUI, with no UI, running until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass

from opstui.config import Config
from opstui.engine import build_engine
from opstui.state import StateStore

log = logging.getLogger("opstui.daemon")

STOP_BUDGET = 4.5
"""Seconds the shutdown may take before we stop waiting: a supervisor's SIGKILL usually follows at 5-10 s."""
HEARTBEAT_KEY = "daemon"
HEARTBEAT_EVERY = 5.0


@dataclass(frozen=True, slots=True)
class DaemonPresence:
    """What the daemon last wrote about itself into the state store (the TUI header shows it)."""

    pid: int
    host: str
    instance: str
    started_at: float
    heartbeat_at: float
    leader: bool | None = None
    """Whether this daemon leads when several run (None: no high availability configured)."""

    def alive(self, now: float) -> bool:
        return now - self.heartbeat_at < 3 * HEARTBEAT_EVERY


def write_presence(store: StateStore, presence: DaemonPresence) -> None:
    store.set_meta(HEARTBEAT_KEY, json.dumps(dataclasses.asdict(presence)))


def read_presence(store: StateStore) -> DaemonPresence | None:
    raw = store.get_meta(HEARTBEAT_KEY)
    if raw is None:
        return None
    try:
        return DaemonPresence(**json.loads(raw))
    except (TypeError, ValueError):
        return None


async def run_daemon(config: Config, *, stop: asyncio.Event | None = None) -> int:
    """Run until `stop` is set or a termination signal arrives; returns the exit status."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    store = StateStore.in_dir(config.state_dir())
    engine = build_engine(config)
    started = time.time()

    def heartbeat(leader: bool | None = None) -> None:
        write_presence(
            store,
            DaemonPresence(
                pid=os.getpid(),
                host=socket.gethostname(),
                instance=config.general.instance,
                started_at=started,
                heartbeat_at=time.time(),
                leader=leader,
            ),
        )

    alerting = None
    try:
        await engine.start()
        heartbeat()
        engine.scheduler.add_job(
            heartbeat, "interval", seconds=HEARTBEAT_EVERY, id="heartbeat", max_instances=1, coalesce=True
        )
        # alerting: rules, the Telegram notifier and the daily report (opstui.alerts)
        from opstui.alerts import start_alerting

        alerting = await start_alerting(engine, config, store, role="daemon")
        log.info(
            "daemon started",
            extra={
                "instance": config.general.instance,
                "config": str(config.path) if config.path else None,
                "sources": [s.name for s in engine.sources],
            },
        )
        await stop.wait()
        log.info("daemon stopping")
    finally:
        if alerting is not None:
            # First, so a notification being sent is marked as sent before anything closes.
            await alerting.stop()
        try:
            await asyncio.wait_for(engine.stop(), timeout=STOP_BUDGET)
        except TimeoutError:
            log.warning("sources did not close within %.1fs; exiting anyway", STOP_BUDGET)
        store.set_meta(HEARTBEAT_KEY, "{}")
        store.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    log.info("daemon stopped")
    return 0
