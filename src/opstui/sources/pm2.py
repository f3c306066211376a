"""PM2 processes from the daemon's own sockets: rpc.sock on one kept connection, pub.sock events pushed as they happen.

Spawning `pm2 jlist` every tick costs about 0.15 s of CPU and a 60 MiB node process; `getMonitorData` on a kept
connection answers in a few milliseconds (docs/performance.md). A crash shows up on `pub.sock` within milliseconds,
and the source pushes fresh facts to the engine at once instead of waiting for the next poll. `pm2 jlist` is the
fallback when the socket cannot be used while the daemon runs. PM2 puts the app's whole environment into every
process record: only an allow-list of PM2's own fields is ever parsed (see `_pm2_rpc`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opstui.errors import ActionError, SourceError, SourceTimeout, SourceUnavailable
from opstui.model import Facts, LogTail, ProcessInfo
from opstui.redact import redact
from opstui.sources._command import last_line, run_command
from opstui.sources._pm2_rpc import (
    READ_CHUNK,
    AmpParser,
    PM2NotPermitted,
    PM2ProtocolError,
    PM2Unavailable,
    RpcConnection,
    decode_text,
    parse_process_list,
)
from opstui.sources._restarts import RestartLog
from opstui.sources.base import Source
from opstui.sources.logs import LogTailer

EVENT_SETTLE = 0.02
"""Seconds to wait after an event before reading the list: a crash's `exit` is followed by the relaunch's
`online` within a few milliseconds, and one read then shows both."""
RECONNECT_DELAYS = (0.1, 1.5, 5.0)
"""First delay, growth factor and cap between attempts to reach pub.sock again (axon's own policy)."""
ACTION_TIMEOUT = 30.0
"""A restart waits for the app to stop (PM2's kill_timeout, 1.6 s by default) and start again."""
_JSON_START = re.compile(r"(?m)^\[(?=\s*[{\]])")

_STATUS = {
    "online": "online",
    "launching": "starting",
    "waiting restart": "restarting",
    "stopping": "stopping",
    "stopped": "stopped",
    "errored": "errored",
    "one-launch-status": "exited",
}
"""PM2's words for a process's state, in opstui's."""


@dataclass(frozen=True, slots=True)
class PM2Process:
    """One process as PM2 reports it, limited to PM2's own bookkeeping (never its environment)."""

    pm_id: int
    name: str
    status: str
    pid: int | None
    restart_time: int | None
    started_at: float | None
    memory: int | None
    cpu: float | None
    err_log: str | None
    out_log: str | None
    cluster: bool

    @classmethod
    def from_entry(cls, entry: dict[str, Any]) -> PM2Process | None:
        env = entry.get("pm2_env") or {}
        monit = entry.get("monit") or {}
        pm_id, name = env.get("pm_id", entry.get("pm_id")), env.get("name", entry.get("name"))
        if not isinstance(pm_id, int) or not isinstance(name, str):
            return None
        uptime = env.get("pm_uptime")
        memory, cpu = monit.get("memory"), monit.get("cpu")
        return cls(
            pm_id=pm_id,
            name=name,
            status=env.get("status", "unknown"),
            pid=entry.get("pid") or None,
            restart_time=env.get("restart_time"),
            started_at=uptime / 1000.0 if uptime else None,
            memory=int(memory) if memory is not None else None,
            cpu=float(cpu) if cpu is not None else None,
            err_log=env.get("pm_err_log_path"),
            out_log=env.get("pm_out_log_path"),
            cluster=env.get("exec_mode") == "cluster_mode",
        )


@contextlib.asynccontextmanager
async def _deadline(method: str, seconds: float) -> AsyncIterator[None]:
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise SourceTimeout(f"PM2 did not answer {method} within {seconds:g}s") from None


def _processes(entries: Iterable[dict[str, Any]]) -> list[PM2Process]:
    return [p for p in (PM2Process.from_entry(e) for e in entries) if p is not None]


def read_jlist_output(text: str) -> list[PM2Process]:
    """The processes in what `pm2 jlist` printed: its banner or an "out-of-date" notice may come around the JSON."""
    starts = list(_JSON_START.finditer(text))
    if not starts:
        raise PM2ProtocolError("pm2 jlist printed no JSON process list")
    return _processes(parse_process_list(text, start=starts[-1].start()))


def daemon_pid(home: Path) -> int | None:
    """The PM2 daemon's PID if one runs for this home (its pm2.pid names a live process), else None."""
    try:
        pid = int((home / "pm2.pid").read_text().strip())
        os.kill(pid, 0)
    except PermissionError:
        return pid  # alive, under another user
    except (OSError, ValueError):
        return None
    return pid


class PM2Client:
    """One PM2 daemon over its rpc.sock: list processes, and restart, stop or start them by name as the CLI does.

    The connection is opened on first use and again after the daemon restarts; many calls may be in flight.
    """

    def __init__(self, home: Path, *, rpc_socket: Path | None = None, timeout: float = 5.0) -> None:
        self.home = home
        self.rpc = RpcConnection(rpc_socket or self.home / "rpc.sock")
        self.timeout = timeout
        """How long listing the processes may take; actions get ACTION_TIMEOUT."""

    async def processes(self) -> list[PM2Process]:
        async with _deadline("getMonitorData", self.timeout):
            reply = await self.rpc.call("getMonitorData", {})
        entries = reply[0] if reply else []
        if not isinstance(entries, list):
            raise PM2ProtocolError("not PM2's protocol (getMonitorData did not answer a list)")
        return _processes(e for e in entries if isinstance(e, dict))

    async def restart(self, name: str) -> list[int]:
        """Restart every process named `name` (all instances of a cluster); returns their pm_ids."""
        ids = await self._ids(name)
        for pm_id in ids:
            await self.restart_id(pm_id)
        return ids

    async def stop(self, name: str) -> list[int]:
        ids = await self._ids(name)
        for pm_id in ids:
            await self.stop_id(pm_id)
        return ids

    async def start(self, name: str) -> list[int]:
        """Start the instances of `name` that are not online; returns their pm_ids."""
        ids = [p.pm_id for p in await self.named(name) if p.status not in ("online", "launching")]
        for pm_id in ids:
            await self.restart_id(pm_id)
        return ids

    async def restart_id(self, pm_id: int) -> None:
        """Restart one process, or start it when it is stopped: `restartProcessId` does both, as `pm2 restart`
        and `pm2 start <name>` use it (starting a stopped process counts no restart)."""
        # `env: {}` changes nothing in the app's environment (the CLI sends its own, which would).
        async with _deadline("restartProcessId", ACTION_TIMEOUT):
            await self.rpc.call("restartProcessId", {"id": pm_id, "env": {}})
        await self._notify(pm_id, "restart")

    async def stop_id(self, pm_id: int) -> None:
        async with _deadline("stopProcessId", ACTION_TIMEOUT):
            await self.rpc.call("stopProcessId", pm_id)
        await self._notify(pm_id, "stop")

    async def named(self, name: str) -> list[PM2Process]:
        """The processes (instances) PM2 knows by this name; refuses (ActionError) when there are none."""
        found = [p for p in await self.processes() if p.name == name]
        if not found:
            raise ActionError(f"PM2 has no process named '{name}'")
        return found

    async def _ids(self, name: str) -> list[int]:
        return [p.pm_id for p in await self.named(name)]

    async def _notify(self, pm_id: int, action: str) -> None:
        # Only this makes the daemon publish the action on pub.sock, as the CLI's notifyGod does.
        async with _deadline("notifyByProcessId", ACTION_TIMEOUT):
            await self.rpc.call("notifyByProcessId", {"id": pm_id, "action_name": action, "manually": True})

    async def close(self) -> None:
        await self.rpc.close()


class PM2Source(Source):
    """The processes of one PM2 daemon (one PM2_HOME), with their error-log tails."""

    kind = "pm2"
    provides = frozenset({"processes", "logs"})

    def __init__(
        self,
        name: str = "pm2",
        *,
        home: Path,
        interval: float,
        timeout: float,
        events: bool = True,
        fallback: bool = True,
        command: str = "pm2",
        error_log_lines: int = 20,
        rpc_socket: Path | None = None,
        pub_socket: Path | None = None,
    ) -> None:
        super().__init__(name, interval=interval, timeout=timeout)
        self.home = home
        # Half the tick for the socket, so a daemon that does not answer leaves time for the fallback.
        self.client = PM2Client(home, rpc_socket=rpc_socket, timeout=min(2.0, timeout / 2))
        self.pub_socket = pub_socket or home / "pub.sock"
        self.events = events
        self.fallback = fallback
        self.command = command
        self.error_log_lines = error_log_lines
        self.restarts = RestartLog()
        self._tails: dict[str, LogTailer] = {}
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._changed: asyncio.Event | None = None
        self._events_connected = False

    async def collect(self) -> Facts:
        if self.events and self.on_update is not None and not self._tasks:
            self._changed = asyncio.Event()
            self._tasks = [
                asyncio.create_task(self._follow_events(), name=f"{self.name} pub.sock"),
                asyncio.create_task(self._push_changes(), name=f"{self.name} push"),
            ]
        # One read at a time: a poll and a push must not fold their answers into the restart counts out of order.
        async with self._lock:
            return await self._read(allow_fallback=self.fallback)

    async def _read(self, *, allow_fallback: bool) -> Facts:
        try:
            processes = await self.client.processes()
            self.detail = "rpc.sock" + (", pub.sock events" if self._events_connected else "")
        except SourceError as exc:
            if not allow_fallback or isinstance(exc, PM2NotPermitted) or daemon_pid(self.home) is None:
                raise
            try:
                processes = await self._jlist()
            except SourceError as failed:
                raise SourceUnavailable(f"{exc}; the fallback failed too: {failed}") from None
            self.detail = f"pm2 jlist (fallback: {exc})"
        return await self._facts(processes)

    async def _jlist(self) -> list[PM2Process]:
        """`pm2 jlist`, only ever run while a daemon is up: with none, it would start one."""
        env = {**os.environ, "PM2_HOME": str(self.home)}
        status, out, err = await run_command([self.command, "jlist"], env=env)
        if status != 0:
            raise SourceUnavailable(f"pm2 jlist failed (exit {status}): {redact(last_line(err))}")
        return read_jlist_output(out.decode(errors="replace"))

    async def _facts(self, processes: list[PM2Process]) -> Facts:
        now = time.time()
        infos = []
        for proc in processes:
            key = f"{self.name}:{proc.name}" + (f":{proc.pm_id}" if proc.cluster else "")
            online = proc.status == "online"
            total = self.restarts.observe(key, now, counter=proc.restart_time, started=proc.started_at)
            infos.append(
                ProcessInfo(
                    key=key,
                    name=proc.name,
                    manager="pm2",
                    status=self.restarts.status(key, now, _STATUS.get(proc.status, proc.status)),
                    source=self.name,
                    pid=proc.pid,
                    started_at=proc.started_at if online else None,
                    restarts_total=total,
                    restarts_last_hour=self.restarts.last_hour(key, now),
                    rss_bytes=proc.memory if online else None,
                    cpu_percent=proc.cpu if online else None,
                    log_files=tuple(path for path in (proc.err_log, proc.out_log) if path),
                )
            )
        self.restarts.forget_others({p.key for p in infos})
        logs: tuple[LogTail, ...] = ()
        if self.error_log_lines:
            keys = [p.key for p in infos]
            logs = await self.in_thread(lambda: self._read_error_logs(processes, keys))
        return Facts(processes=tuple(infos), logs=logs)

    def _read_error_logs(self, processes: list[PM2Process], keys: list[str]) -> tuple[LogTail, ...]:
        tails = []
        for proc, key in zip(processes, keys, strict=True):
            if not proc.err_log:
                continue
            tailer = self._tails.get(proc.err_log)
            if tailer is None:
                tailer = self._tails[proc.err_log] = LogTailer(Path(proc.err_log), lines=self.error_log_lines)
            try:
                tailer.read()
            except SourceError:
                continue  # an unreadable error log leaves the tail empty; the process itself is still reported
            tails.append(LogTail(key=key, name=proc.name, source=self.name, path=proc.err_log, lines=tailer.lines))
        for path in set(self._tails) - {p.err_log for p in processes}:
            self._tails.pop(path).close()
        return tuple(tails)

    async def _follow_events(self) -> None:
        """Read pub.sock for as long as the source runs, reconnecting when the daemon goes away and comes back.

        Reading never pauses: PM2 writes to subscribers without back-pressure, and a subscriber that stops
        reading makes the daemon's memory grow without bound. Only topics are decoded; payloads (which carry the
        app's environment) are dropped unread.
        """
        first, growth, cap = RECONNECT_DELAYS
        delay = first
        while True:
            try:
                reader, writer = await asyncio.open_unix_connection(str(self.pub_socket))
            except OSError:
                await asyncio.sleep(delay)
                delay = min(cap, delay * growth)
                continue
            connected_at = time.monotonic()
            self._events_connected = True
            self._notice_change()  # events were missed while disconnected: read the whole list again
            parser = AmpParser()
            try:
                while chunk := await reader.read(READ_CHUNK):
                    topics = [decode_text(frame[0]) for frame in parser.feed(chunk)]
                    if "process:event" in topics or "pm2:kill" in topics:
                        self._notice_change()
            except (PM2ProtocolError, ConnectionError):
                pass
            finally:
                self._events_connected = False
                writer.close()
            # Back off after every disconnect too, so a socket that accepts and hangs up at once is no busy loop;
            # a connection that lasted starts the next round of attempts afresh.
            if time.monotonic() - connected_at > cap:
                delay = first
            await asyncio.sleep(delay)
            delay = min(cap, delay * growth)

    def _notice_change(self) -> None:
        if self._changed is not None:
            self._changed.set()

    async def _push_changes(self) -> None:
        assert self._changed is not None
        while True:
            await self._changed.wait()
            await asyncio.sleep(EVENT_SETTLE)
            self._changed.clear()
            # Delivered under the lock, so a poll that starts later cannot be overtaken by this older read.
            async with self._lock:
                try:
                    facts = await asyncio.wait_for(self._read(allow_fallback=False), self.timeout)
                except (SourceError, TimeoutError):
                    continue  # the daemon is going away; the next poll reports it
                if self.on_update is not None:
                    self.on_update(facts)

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.client.close()
        for tailer in self._tails.values():
            tailer.close()
        self._tails.clear()


__all__ = ["PM2Client", "PM2Process", "PM2Source", "PM2Unavailable", "daemon_pid"]
