"""Docker containers from the Engine API over its unix socket: state, restarts, memory (cgroup v1 and v2) and CPU."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opstui.errors import SourceError, SourceTimeout, SourceUnavailable
from opstui.model import Facts, ProcessInfo
from opstui.sources._restarts import RestartLog
from opstui.sources.base import Source

if TYPE_CHECKING:
    from opstui._httpx import httpx

_DROPPED = frozenset({"Env", "Cmd", "Args", "Entrypoint", "Command", "Labels"})
"""Keys never kept from an Engine API answer: the container's environment and command lines may hold secrets."""


def _without_secrets(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    return {k: v for k, v in pairs if k not in _DROPPED}


def memory_used(stats: dict[str, Any]) -> int | None:
    """Memory in use as `docker stats` shows it: usage minus the reclaimable inactive page cache.

    cgroup v1 reports `total_inactive_file`, cgroup v2 `inactive_file` (the docker CLI's own rule).
    """
    memory = stats.get("memory_stats") or {}
    usage = memory.get("usage")
    if not isinstance(usage, int):
        return None
    detail = memory.get("stats") or {}
    for key in ("total_inactive_file", "inactive_file"):
        inactive = detail.get(key)
        if isinstance(inactive, int) and inactive < usage:
            return usage - inactive
    return usage


def _parse_time(value: Any) -> float | None:
    # RFC 3339 with nanoseconds (fromisoformat keeps microseconds); "0001-01-01T00:00:00Z" means never.
    if not isinstance(value, str) or value.startswith("0001-"):
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def _status(state: dict[str, Any]) -> str:
    status = state.get("Status")
    health = (state.get("Health") or {}).get("Status")
    if status == "running":
        return "unhealthy" if health == "unhealthy" else "online"
    if status == "restarting":
        return "crash-loop"  # the restart policy is bringing a dead container back, again
    if status == "exited":
        return "stopped" if state.get("ExitCode") == 0 else "errored"
    if status == "created":
        return "stopped"
    return str(status or "unknown")


class DockerSource(Source):
    """Containers of one Docker engine: those named in `containers`, or every container when none is named."""

    kind = "docker"
    provides = frozenset({"processes"})

    def __init__(
        self,
        name: str = "docker",
        *,
        socket: Path,
        containers: Sequence[str] = (),
        interval: float,
        timeout: float,
    ) -> None:
        super().__init__(name, interval=interval, timeout=timeout)
        self.socket = socket
        self.containers = list(containers)
        self.restarts = RestartLog()
        self._cpu: dict[str, tuple[int, int, int]] = {}
        self._client: httpx.AsyncClient | None = None
        self.detail = f"engine API at {socket}"

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = engine_client(self.socket, self.timeout)
        return self._client

    async def _get(self, path: str, **params: str) -> Any:
        from opstui._httpx import httpx

        try:
            response = await self._http().get(path, params=params)
        except httpx.TimeoutException:
            raise SourceTimeout(f"the Docker engine at {self.socket} did not answer {path} in time") from None
        except httpx.TransportError as exc:
            raise SourceUnavailable(transport_problem(exc, self.socket)) from None
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise SourceError(f"the Docker engine answered {path} with HTTP {response.status_code}")
        try:
            return json.loads(response.content, object_pairs_hook=_without_secrets)
        except ValueError:
            raise SourceError(f"{self.socket} answered {path} with something that is not the Docker API") from None

    async def collect(self) -> Facts:
        listed = await self._get("/containers/json", all="1")
        if not isinstance(listed, list):
            raise SourceError(f"{self.socket} answered with something that is not the Docker API")
        by_name = {}
        for entry in listed:
            names = entry.get("Names") if isinstance(entry, dict) else None
            if isinstance(names, list) and names and isinstance(entry.get("Id"), str):
                by_name[str(names[0]).lstrip("/")] = entry["Id"]
        wanted = self.containers or sorted(by_name)
        found = await asyncio.gather(*(self._container(name, by_name.get(name)) for name in wanted))
        self.restarts.forget_others({p.key for p in found})
        return Facts(processes=tuple(found))

    async def _container(self, name: str, container_id: str | None) -> ProcessInfo:
        key = f"{self.name}:{name}"
        missing = ProcessInfo(key=key, name=name, manager="docker", status="missing", source=self.name)
        if container_id is None:
            return missing
        inspect = await self._get(f"/containers/{container_id}/json")
        if not isinstance(inspect, dict):
            return missing  # removed between the list and the inspect
        state = inspect.get("State") or {}
        running = state.get("Status") == "running"
        stats = (
            await self._get(f"/containers/{container_id}/stats", stream="false", **{"one-shot": "true"})
            if running
            else None
        )
        stats = stats if isinstance(stats, dict) else {}
        now = time.time()
        started_at = _parse_time(state.get("StartedAt"))
        restart_count = inspect.get("RestartCount")
        total = self.restarts.observe(
            key,
            now,
            counter=restart_count if isinstance(restart_count, int) else None,
            started=started_at if running else None,
        )
        pid = state.get("Pid")
        log_path = inspect.get("LogPath")
        return ProcessInfo(
            key=key,
            name=name,
            manager="docker",
            status=self.restarts.status(key, now, _status(state)),
            source=self.name,
            pid=pid if isinstance(pid, int) and pid > 0 else None,
            started_at=started_at if running else None,
            restarts_total=total,
            restarts_last_hour=self.restarts.last_hour(key, now),
            rss_bytes=memory_used(stats) if stats else None,
            cpu_percent=self._cpu_percent(key, stats) if stats else None,
            log_files=(log_path,) if isinstance(log_path, str) and log_path else (),
        )

    def _cpu_percent(self, key: str, stats: dict[str, Any]) -> float | None:
        """CPU as `docker stats` computes it, between this look and the previous one (one-shot stats have no
        `precpu_stats` of their own): container time over host time, times the CPUs online."""
        cpu = stats.get("cpu_stats") or {}
        total = (cpu.get("cpu_usage") or {}).get("total_usage")
        system = cpu.get("system_cpu_usage")
        online = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or ()) or 1
        if not isinstance(total, int) or not isinstance(system, int):
            return None
        previous = self._cpu.get(key)
        self._cpu[key] = (total, system, online)
        if previous is None or system <= previous[1] or total < previous[0]:
            return None
        return round((total - previous[0]) / (system - previous[1]) * online * 100.0, 1)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def engine_client(socket: Path, timeout: float) -> httpx.AsyncClient:
    """An HTTP client for the Engine API on its unix socket (the source's, and the built-in actions')."""
    import httpx

    return httpx.AsyncClient(
        transport=httpx.AsyncHTTPTransport(uds=str(socket)), base_url="http://docker", timeout=httpx.Timeout(timeout)
    )


def transport_problem(exc: Exception, socket: Path) -> str:
    """Why a request to the engine failed, in words: the socket's OSError when there is one."""
    cause = exc.__cause__ or exc.__context__
    while cause is not None and not isinstance(cause, OSError):
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, OSError):
        return _engine_error(cause, socket)
    return f"cannot talk to the Docker engine at {socket}: {exc}"


def _engine_error(exc: OSError, socket: Path) -> str:
    if isinstance(exc, FileNotFoundError):
        return f"no Docker engine: {socket} does not exist (is Docker installed and running?)"
    if isinstance(exc, ConnectionRefusedError):
        return f"the Docker engine is not running: {socket} refuses connections"
    if isinstance(exc, PermissionError):
        return f"permission denied on {socket}: add the user running opstui to the docker group"
    return f"cannot connect to the Docker engine at {socket}: {exc.strerror or exc}"
