"""`opstui demo` watches its backend's processes: the worker's crash loop shows, and its error lines with it."""

from __future__ import annotations

import asyncio
import time

from conftest import EngineFor
from opstui.config import load_config
from opstui.demo import DemoWorld
from opstui.model import Snapshot
from opstui.sources import build_sources


async def test_the_demo_shows_the_workers_restarts_climbing_and_its_error_lines(engine_for: EngineFor) -> None:
    with DemoWorld(cycle_start=28) as world:
        config = load_config(world.config_path)
        engine = engine_for(*(s for s in build_sources(config) if s.kind in ("processes", "logs")))
        published: list[Snapshot] = []
        engine.subscribe(published.append)
        await engine.start()

        def worker_restarts() -> int:
            if not published:
                return 0
            return next((p.restarts_total or 0 for p in published[-1].processes if p.name == "worker"), 0)

        deadline = time.monotonic() + 60
        while worker_restarts() < 3:
            assert time.monotonic() < deadline, "the worker's restarts did not climb"
            await asyncio.sleep(0.2)
        await engine.stop()
        snap = published[-1]
    procs = {p.name: p for p in snap.processes}
    assert procs["api"].status == "online" and procs["batch"].status == "online"
    assert procs["worker"].status == "crash-loop", "three restarts within minutes"
    assert procs["worker"].restarts_last_hour == procs["worker"].restarts_total
    assert str(world.logs / "worker-error.log") in procs["worker"].log_files
    counts = [p.restarts_total for s in published for p in s.processes if p.name == "worker"]
    assert counts == sorted(counts), "a running total never goes down"
    worker_errors = next(t for t in snap.logs if t.name == "worker")
    assert "Unhandled rejection: ECONNRESET while calling amoCRM (lead sync aborted)" in " ".join(worker_errors.lines)
    assert {t.name for t in snap.logs} == {"worker", "batch"}
