"""The memory pane: the host's use with its trend, Redis memory, and the biggest processes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from textual.app import ComposeResult

from opstui.model import METRICS, HostMemory, Level, MemoryInfo, Snapshot, series_key
from opstui.tui.cells import STALE, Cell, KeyedTable, Lines, level_style, mark, trend
from opstui.tui.panes.base import Pane, View, judged
from opstui.units import format_bytes

HOST_USED = next(m for m in METRICS[HostMemory] if m.attr == "used_percent")
TREND_WIDTH = 30


class MemoryPane(Pane):
    pane_id = "memory"
    title = "Memory"
    tab_label = "Memory"
    shows = frozenset({"host", "redis_memory"})
    nothing_watched = "Host memory is not watched: [host] enabled = false in the config."

    def __init__(self) -> None:
        super().__init__()
        self.summary = Lines(classes="summary")
        self.table = KeyedTable(
            (("name", "Biggest processes"), ("pid", "PID"), ("rss", "Memory"), ("cpu", "CPU")), id="table-memory"
        )

    def compose_body(self) -> ComposeResult:
        yield self.summary
        yield self.table

    def items(self, snapshot: Snapshot) -> Iterable[Any]:
        host = snapshot.memory.host
        return ((host,) if host is not None else ()) + snapshot.memory.redis

    def level_of(self, item: Any, view: View) -> Level:
        if isinstance(item, HostMemory):
            return judged(view, memory=MemoryInfo(host=item))
        return judged(view, memory=MemoryInfo(redis=(item,)))

    def show_body(self, view: View) -> None:
        memory = view.snapshot.memory
        lines: list[list[Cell]] = []
        if memory.host is not None:
            lines += self._host(memory.host, view)
        for redis in memory.redis:
            stale = view.stale(redis)
            level = judged(view, memory=MemoryInfo(redis=(redis,)))
            limit = (
                f" of {format_bytes(redis.max_bytes)} ({redis.used_percent:.0f}%)"
                if redis.max_bytes and redis.used_percent is not None
                else " (no maxmemory)"
            )
            lines.append(
                [
                    ("Redis ", "bold"),
                    (redis.name, ""),
                    ("  ", ""),
                    (format_bytes(redis.used_bytes) + limit, level_style(level, stale=stale)),
                ]
            )
        self.summary.show(lines)
        host = memory.host
        stale = host is not None and view.stale(host)
        style = STALE if stale else ""
        self.table.show_rows(
            [
                (
                    str(top.pid),
                    (
                        (top.name, style),
                        (str(top.pid), style),
                        (format_bytes(top.rss_bytes), style),
                        ("-" if top.cpu_percent is None else f"{top.cpu_percent:.0f}%", style),
                    ),
                    top,
                )
                for top in (host.top if host is not None else ())
            ]
        )

    def _host(self, host: HostMemory, view: View) -> list[list[Cell]]:
        stale = view.stale(host)
        level = self.level_of(host, view)
        style = level_style(level, stale=stale, strong=True)
        used = f"{host.used_percent:.0f}% used" if level is Level.OK else f"{mark(level)} {host.used_percent:.0f}% used"
        load = f" · load {host.load_1m:.2f}" if host.load_1m is not None else ""
        cpus = f" on {host.cpu_count} CPUs" if host.cpu_count and load else ""
        points = view.snapshot.series.get(series_key(HOST_USED, host.key), ())
        history = [value for _, value in points]
        span = f"  last {view.age(points[0][0])}" if len(points) > 1 else ""
        return [
            [
                ("Host ", "bold"),
                (used, style),
                (
                    f" · {format_bytes(host.available_bytes)} free of {format_bytes(host.total_bytes)}",
                    STALE if stale else "",
                ),
            ],
            [(f"swap {host.swap_used_percent:.0f}%{load}{cpus}", STALE if stale else "")],
            [(trend(history, TREND_WIDTH, top=100.0), level_style(level, stale=stale) or "$primary"), (span, STALE)],
        ]
