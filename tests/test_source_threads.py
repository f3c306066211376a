"""A source reading in a worker thread never runs two reads at once, even after the engine gave up waiting."""

from __future__ import annotations

import asyncio
import threading

from opstui.engine import Engine
from opstui.model import Facts
from opstui.sources.base import Source


class SlowFile(Source):
    """Reads a 'file' in a thread; the first read hangs until released, as a read of a huge log might."""

    kind = "test"

    def __init__(self) -> None:
        super().__init__("slow", interval=1, timeout=0.2)
        self.release = threading.Event()
        self.reads = 0
        self.inside = 0
        self.most_inside = 0

    async def collect(self) -> Facts:
        return await self.in_thread(self._read)

    def _read(self) -> Facts:
        self.inside += 1
        self.most_inside = max(self.most_inside, self.inside)
        self.reads += 1
        if self.reads == 1:
            self.release.wait(5)
        self.inside -= 1
        return Facts()


async def test_a_read_that_outlives_its_timeout_is_not_joined_by_the_next_tick() -> None:
    source = SlowFile()
    engine = Engine([source], instance="test")
    await engine.run_source(source)
    engine.flush()
    assert engine.snapshot.sources["slow"].error == "timed out after 200ms"
    await engine.run_source(source)
    engine.flush()
    assert engine.snapshot.sources["slow"].error == (
        "still busy with the previous read, which took longer than the timeout"
    )
    source.release.set()
    assert await asyncio.to_thread(source._reading.acquire, True, 5)  # the stuck read finishes
    source._reading.release()
    await engine.run_source(source)
    engine.flush()
    assert engine.snapshot.sources["slow"].ok
    assert source.most_inside == 1 and source.reads == 2


async def test_stuck_reads_do_not_starve_the_other_sources() -> None:
    # More stuck sources than the loop's shared thread pool has threads (min(32, cpus + 4)).
    stuck = [SlowFile() for _ in range(40)]
    for number, source in enumerate(stuck):
        source.name = f"stuck {number}"
    healthy = SlowFile()
    healthy.reads = 1  # its reads do not hang
    engine = Engine([*stuck, healthy], instance="test")
    await engine.collect_once()
    assert all(engine.snapshot.sources[s.name].error == "timed out after 200ms" for s in stuck)
    assert engine.snapshot.sources["slow"].ok
    assert await asyncio.to_thread(lambda: True)  # the shared pool is free for everything else
    for source in stuck:
        source.release.set()
