"""The local host: memory, swap, load and the biggest processes, read with psutil."""

from __future__ import annotations

import heapq
import os
import time

import psutil

from opstui.model import Facts, HostMemory, TopProcess
from opstui.sources._proctable import scan
from opstui.sources.base import Source


class HostSource(Source):
    kind = "host"
    provides = frozenset({"host"})

    def __init__(self, name: str = "host", *, interval: float, timeout: float, top_processes: int) -> None:
        super().__init__(name, interval=interval, timeout=timeout)
        self.top_processes = top_processes
        self._last_sweep: tuple[float, dict[tuple[int, float], float]] | None = None
        """When the last sweep was and each process's CPU seconds then, for CPU % since that sweep."""

    async def collect(self) -> Facts:
        # psutil walks /proc synchronously; keep it off the event loop.
        return await self.in_thread(self._read)

    def _read(self) -> Facts:
        memory = psutil.virtual_memory()
        swap = psutil.swap_memory()
        top: list[TopProcess] = []
        if self.top_processes:
            top = self._top_by_memory()
        host = HostMemory(
            total_bytes=memory.total,
            available_bytes=memory.available,
            used_percent=round(memory.percent, 1),
            swap_total_bytes=swap.total,
            swap_used_percent=round(swap.percent, 1),
            source=self.name,
            top=tuple(top),
            load_1m=round(os.getloadavg()[0], 2),
            cpu_count=psutil.cpu_count(),
        )
        return Facts(host=host)

    def _top_by_memory(self) -> list[TopProcess]:
        now = time.monotonic()
        table = [p for p in scan() if not p.zombie]
        previous_at, previous = self._last_sweep or (now, {})
        elapsed = now - previous_at
        self._last_sweep = (now, {(p.pid, p.created): p.cpu_seconds for p in table})
        top = heapq.nlargest(self.top_processes, table, key=lambda p: p.rss_bytes)

        def cpu_percent(cpu_seconds: float, before: float | None) -> float:
            # A process seen for the first time has no CPU % yet: 0.0, as psutil's first cpu_percent() says.
            if before is None or elapsed <= 0:
                return 0.0
            return round(100.0 * max(0.0, cpu_seconds - before) / elapsed, 1)

        return [
            TopProcess(
                pid=p.pid,
                name=p.name or "?",
                rss_bytes=p.rss_bytes,
                cpu_percent=cpu_percent(p.cpu_seconds, previous.get((p.pid, p.created))),
            )
            for p in top
        ]
