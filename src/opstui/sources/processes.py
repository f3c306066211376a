"""Plain processes, found by name, command-line pattern or pidfile with psutil; a restart is a new PID or start time."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from opstui.config.processes import WatchedProcessConfig
from opstui.model import Facts, ProcessInfo
from opstui.sources._proctable import scan
from opstui.sources._restarts import RestartLog
from opstui.sources.base import Source

SAME_START = 0.05
"""Seconds within which two start times are one process's (the sweep reads them with a clock tick's precision)."""


@dataclass(frozen=True, slots=True)
class Watched:
    """How to find one process: exactly one of `process_name`, `cmdline` (a regex) or `pidfile`."""

    name: str
    process_name: str | None = None
    cmdline: re.Pattern[str] | None = None
    pidfile: Path | None = None
    log_files: tuple[str, ...] = ()

    @classmethod
    def of(cls, config: WatchedProcessConfig) -> Watched:
        return cls(
            name=config.name,
            process_name=config.process_name,
            cmdline=re.compile(config.cmdline) if config.cmdline is not None else None,
            pidfile=config.pidfile,
            log_files=tuple(str(p) for p in config.log_files),
        )


@dataclass(frozen=True, slots=True)
class _Candidate:
    pid: int
    ppid: int
    created: float
    name: str
    cmdline: str
    argv0: str


class ProcessesSource(Source):
    """Watched processes of this host, all found with at most one sweep of the process table per tick."""

    kind = "processes"
    provides = frozenset({"processes"})

    def __init__(self, name: str = "processes", *, watch: Sequence[Watched], interval: float, timeout: float) -> None:
        super().__init__(name, interval=interval, timeout=timeout)
        self.watch = list(watch)
        self.restarts = RestartLog()
        self._found: dict[str, psutil.Process] = {}
        """The process each watch entry found last time; kept so cpu_percent measures since the last look."""

    async def collect(self) -> Facts:
        # psutil reads /proc synchronously; keep it off the event loop.
        return await self.in_thread(self._read)

    def _read(self) -> Facts:
        now = time.time()
        problems: list[str] = []
        table: list[_Candidate] | None = None
        processes = []
        for watched in self.watch:
            proc = self._still_there(watched)
            if proc is None and watched.pidfile is not None:
                proc = self._from_pidfile(watched.pidfile, problems)
            elif proc is None:
                if table is None:
                    table = _sweep()
                proc = _pick(watched, table)
            processes.append(self._info(watched, proc, now))
        self.detail = "; ".join(problems) or None
        return Facts(processes=tuple(processes))

    def _still_there(self, watched: Watched) -> psutil.Process | None:
        # A process found before that still runs (same PID and create time) is still the oldest match: no sweep.
        proc = self._found.get(watched.name)
        if proc is None or not proc.is_running():
            return None
        if watched.pidfile is not None:
            try:
                if _read_pid(watched.pidfile) != proc.pid:
                    return None
            except OSError:
                return None
        return proc

    def _from_pidfile(self, path: Path, problems: list[str]) -> psutil.Process | None:
        try:
            pid = _read_pid(path)
        except FileNotFoundError:
            problems.append(f"{path} does not exist")
            return None
        except OSError as exc:
            problems.append(f"cannot read {path}: {exc.strerror}")
            return None
        if pid is None:
            problems.append(f"{path} does not hold a PID")
            return None
        try:
            return psutil.Process(pid)
        except psutil.NoSuchProcess:
            problems.append(f"{path} names PID {pid}, which is not running")
            return None

    def _info(self, watched: Watched, proc: psutil.Process | None, now: float) -> ProcessInfo:
        key = f"{self.name}:{watched.name}"
        figures = _figures(proc) if proc is not None else None
        pid: int | None = None
        created = rss = cpu = None
        if proc is None or figures is None:
            self._found.pop(watched.name, None)
            status = "missing"
            total = self.restarts.observe(key, now)
        else:
            status, created, rss, cpu = figures
            pid = proc.pid
            if self._found.get(watched.name) is not proc:
                cpu = None  # psutil measures CPU between two looks at the same process; this is the first
            self._found[watched.name] = proc
            total = self.restarts.observe(key, now, started=(pid, created))
        return ProcessInfo(
            key=key,
            name=watched.name,
            manager="process",
            status=self.restarts.status(key, now, status),
            source=self.name,
            pid=pid,
            started_at=created,
            restarts_total=total,
            restarts_last_hour=self.restarts.last_hour(key, now),
            rss_bytes=rss,
            cpu_percent=cpu,
            log_files=watched.log_files,
        )


def _figures(proc: psutil.Process) -> tuple[str, float, int | None, float | None] | None:
    """(status, create time, RSS, CPU % since the last call) of a live process; None once it is gone."""
    try:
        with proc.oneshot():
            state = proc.status()
            created = proc.create_time()
            try:
                rss: int | None = proc.memory_info().rss
                cpu: float | None = round(proc.cpu_percent(None), 1)
            except psutil.AccessDenied:
                rss = cpu = None
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    if state == psutil.STATUS_ZOMBIE:
        return None  # it exited; only its parent has not collected it yet
    status = "stopped" if state in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP) else "online"
    return status, created, rss, cpu


def _read_pid(path: Path) -> int | None:
    text = path.read_text(errors="replace").strip()
    return int(text) if text.isdigit() and int(text) > 0 else None


def _sweep() -> list[_Candidate]:
    """Every live process of the host but opstui itself: PID, parent, start time, name and command line."""
    me = os.getpid()
    # A zombie has exited (its parent has not reaped it yet): the process that replaced it is the one to find.
    return [
        _Candidate(
            pid=p.pid,
            ppid=p.ppid,
            created=p.created,
            name=p.name,
            cmdline=" ".join(p.argv or ()),
            argv0=os.path.basename(p.argv[0]) if p.argv else "",
        )
        for p in scan(cmdline=True)
        if p.pid != me and not p.zombie
    ]


def _pick(watched: Watched, table: list[_Candidate]) -> psutil.Process | None:
    """The oldest matching process whose parent does not match too (a master, not its forked workers)."""
    if watched.process_name is not None:
        matches = [c for c in table if watched.process_name in (c.name, c.argv0)]
    elif watched.cmdline is not None:
        pattern = watched.cmdline
        matches = [c for c in table if pattern.search(c.cmdline)]
    else:
        return None
    pids = {c.pid for c in matches}
    for candidate in sorted((c for c in matches if c.ppid not in pids), key=lambda c: (c.created, c.pid)):
        try:
            proc = psutil.Process(candidate.pid)
            if abs(proc.create_time() - candidate.created) < SAME_START:
                return proc
        except psutil.NoSuchProcess:
            continue
    return None
