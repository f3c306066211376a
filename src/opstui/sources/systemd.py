"""systemd services: state, crash-loop sign, main PID, restarts, memory and CPU from one `systemctl show` per tick."""

from __future__ import annotations

import os
import time
from calendar import timegm
from collections.abc import Sequence
from dataclasses import dataclass

from opstui.errors import SourceError, SourceUnavailable
from opstui.model import Facts, ProcessInfo
from opstui.sources._command import last_line, run_command
from opstui.sources._restarts import RestartLog
from opstui.sources.base import Source

PROPERTIES = (
    "Id",
    "LoadState",
    "ActiveState",
    "SubState",
    "MainPID",
    "NRestarts",
    "MemoryCurrent",
    "CPUUsageNSec",
    "ExecMainStartTimestamp",
)
_UNSET = {"", "[not set]", "n/a", "18446744073709551615"}
"""How systemctl shows a value it does not have (accounting off, never started, no limit)."""


@dataclass(frozen=True, slots=True)
class UnitState:
    """One unit as `systemctl show` describes it."""

    unit: str
    load_state: str
    active_state: str
    sub_state: str
    main_pid: int | None
    n_restarts: int | None
    memory_bytes: int | None
    cpu_nsec: int | None
    started_at: float | None

    @property
    def status(self) -> str:
        """opstui's word for the unit's state; SubState `auto-restart` is systemd waiting to restart a crash."""
        if self.load_state == "not-found":
            return "missing"
        if self.sub_state == "auto-restart":
            return "crash-loop"
        return {
            "active": "online",
            "reloading": "online",
            "activating": "starting",
            "deactivating": "stopping",
            "inactive": "stopped",
            "failed": "failed",
        }.get(self.active_state, self.active_state)


def parse_show(text: str) -> list[UnitState]:
    """The blocks of `systemctl show --property=... UNIT...`, one per unit, separated by blank lines."""
    units = []
    for block in text.strip().split("\n\n"):
        values = dict(line.partition("=")[::2] for line in block.splitlines() if "=" in line)
        if not values.get("Id"):
            continue
        units.append(
            UnitState(
                unit=values["Id"],
                load_state=values.get("LoadState", ""),
                active_state=values.get("ActiveState", ""),
                sub_state=values.get("SubState", ""),
                main_pid=_number(values.get("MainPID")) or None,
                n_restarts=_number(values.get("NRestarts")),
                memory_bytes=_number(values.get("MemoryCurrent")),
                cpu_nsec=_number(values.get("CPUUsageNSec")),
                started_at=_timestamp(values.get("ExecMainStartTimestamp")),
            )
        )
    return units


def _number(value: str | None) -> int | None:
    if value is None or value.strip() in _UNSET:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _timestamp(value: str | None) -> float | None:
    # systemctl runs with TZ=UTC and LC_ALL=C, so this is "Tue 2024-05-14 10:32:01 UTC".
    if value is None or value.strip() in _UNSET:
        return None
    parts = value.split()
    if len(parts) != 4 or parts[3] != "UTC":
        return None
    try:
        parsed = time.strptime(f"{parts[1]} {parts[2]}", "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    return float(timegm(parsed))


class SystemdSource(Source):
    """Configured units of one systemd manager (the system's, or the user's with `user = true`)."""

    kind = "systemd"
    provides = frozenset({"processes"})

    def __init__(
        self,
        name: str = "systemd",
        *,
        units: Sequence[str],
        user: bool = False,
        interval: float,
        timeout: float,
        command: Sequence[str] = ("systemctl",),
    ) -> None:
        super().__init__(name, interval=interval, timeout=timeout)
        self.units = list(units)
        self.argv = [
            *command,
            *(["--user"] if user else []),
            "show",
            f"--property={','.join(PROPERTIES)}",
            "--",
            *self.units,
        ]
        self.restarts = RestartLog()
        self._cpu: dict[str, tuple[float, int]] = {}

    async def collect(self) -> Facts:
        text = await self._systemctl()
        now = time.time()
        found = {u.unit: u for u in parse_show(text)}
        processes = []
        unknown = []
        for unit in self.units:
            state = found.get(unit) or found.get(f"{unit}.service")
            if state is None or state.load_state == "not-found":
                unknown.append(unit)
            processes.append(self._process(unit, state, now))
        self.detail = f"unit not found: {', '.join(unknown)}" if unknown else None
        return Facts(processes=tuple(processes))

    def _process(self, unit: str, state: UnitState | None, now: float) -> ProcessInfo:
        key = f"{self.name}:{unit}"
        if state is None:
            return ProcessInfo(key=key, name=unit, manager="systemd", status="missing", source=self.name)
        running = state.main_pid is not None
        total = self.restarts.observe(
            key, now, counter=state.n_restarts, started=(state.started_at, state.main_pid) if running else None
        )
        return ProcessInfo(
            key=key,
            name=unit,
            manager="systemd",
            status=self.restarts.status(key, now, state.status),
            source=self.name,
            pid=state.main_pid,
            started_at=state.started_at if running else None,
            restarts_total=total,
            restarts_last_hour=self.restarts.last_hour(key, now),
            rss_bytes=state.memory_bytes,
            cpu_percent=self._cpu_percent(key, now, state.cpu_nsec),
        )

    def _cpu_percent(self, key: str, now: float, cpu_nsec: int | None) -> float | None:
        """Percent of one core since the previous look, from the unit's cgroup CPU time (needs CPUAccounting)."""
        previous = self._cpu.get(key)
        if cpu_nsec is None:
            self._cpu.pop(key, None)
            return None
        self._cpu[key] = (now, cpu_nsec)
        if previous is None or now <= previous[0] or cpu_nsec < previous[1]:
            return None
        return round((cpu_nsec - previous[1]) / 1e9 / (now - previous[0]) * 100.0, 1)

    async def _systemctl(self) -> str:
        # UTC and the C locale make ExecMainStartTimestamp one fixed, parseable shape.
        env = {**os.environ, "TZ": "UTC", "LC_ALL": "C", "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0"}
        try:
            status, out, err = await run_command(self.argv, env=env)
        except SourceUnavailable as exc:
            raise SourceUnavailable(f"{exc}: does this host run systemd?") from None
        if status != 0:
            raise SourceUnavailable(f"systemctl show failed (exit {status}): {last_line(err)}")
        text = out.decode(errors="replace")
        if self.units and "Id=" not in text:
            raise SourceError("systemctl show printed no unit properties")
        return text
