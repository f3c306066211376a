"""The headless daemon: the same engine as the TUI, with no UI, running until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal

from opstui.config import Config
from opstui.engine import build_engine
from opstui.state import StateStore

log = logging.getLogger("opstui.daemon")

STOP_BUDGET = 4.5
"""Seconds the shutdown may take before we stop waiting: a supervisor's SIGKILL usually follows at 5-10 s."""


async def run_daemon(config: Config, *, stop: asyncio.Event | None = None) -> int:
    """Run until `stop` is set or a termination signal arrives; returns the exit status."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    store = StateStore.in_dir(config.state_dir())
    engine = build_engine(config)
    try:
        await engine.start()
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
        try:
            await asyncio.wait_for(engine.stop(), timeout=STOP_BUDGET)
        except TimeoutError:
            log.warning("sources did not close within %.1fs; exiting anyway", STOP_BUDGET)
        store.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    log.info("daemon stopped")
    return 0
