"""The local host: memory, swap, load and the biggest processes, read with psutil."""

from __future__ import annotations

import heapq
import os

import psutil

from opstui.model import Facts, HostMemory, TopProcess
from opstui.sources.base import Source


class HostSource(Source):
    kind = "host"
    provides = frozenset({"host"})

    def __init__(self, name: str = "host", *, interval: float, timeout: float, top_processes: int) -> None:
        super().__init__(name, interval=interval, timeout=timeout)
        self.top_processes = top_processes

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
        # process_iter keeps its Process objects between calls, so cpu_percent measures since the last sweep.
        found = []
        for proc in psutil.process_iter(["name", "memory_info", "cpu_percent"]):
            info = proc.info
            mem = info.get("memory_info")
            if mem is None:
                continue
            found.append(
                TopProcess(
                    pid=proc.pid, name=info.get("name") or "?", rss_bytes=mem.rss, cpu_percent=info.get("cpu_percent")
                )
            )
        return heapq.nlargest(self.top_processes, found, key=lambda p: p.rss_bytes)
