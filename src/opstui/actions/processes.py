"""The built-in restart, stop and start of a process, each through the manager that runs it.

PM2 over its rpc.sock as its CLI does it; systemd with `systemctl [--user] VERB UNIT`; Docker with the Engine
API's `POST /containers/ID/VERB` on the engine's socket. A plain process has no manager opstui can ask: a
restart is SIGTERM (its supervisor starts it again, and opstui waits to see it back), a stop is SIGTERM and
then SIGKILL, and a start is refused, since opstui only knows how to find it, not how to launch it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import time
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from opstui.actions.base import Emit, Outcome, Prepared, Target
from opstui.actions.builtin import Builtin, find
from opstui.actions.runner import run_program
from opstui.errors import ActionError, OpsError
from opstui.units import format_duration

if TYPE_CHECKING:
    from opstui.config import Config
    from opstui.config.processes import WatchedProcessConfig
    from opstui.sources.pm2 import PM2Process

VERBS = ("restart", "stop", "start")
DESCRIPTIONS = {
    "restart": "Restart the process through its manager (a plain process gets SIGTERM; its supervisor starts it)",
    "stop": "Stop the process through its manager (a plain process gets SIGTERM, then SIGKILL)",
    "start": "Start a stopped process through its manager (PM2, systemd or Docker)",
}
PROCESSES_SOURCE = "processes"
"""The name of the source of `[[processes.watch]]` rows."""
BACK_WAIT = 15.0
"""Seconds a restart of a plain process waits for its supervisor to start it again."""
LOOK_TIMEOUT = 10.0
"""Seconds a plan may take to look the process up in its manager."""
_RUNNING = ("online", "launching")


def shown_home(path: Path) -> str:
    """`~/.pm2` rather than `/home/bot/.pm2`, as people write it."""
    home = str(Path.home())
    text = str(path)
    return "~" + text[len(home) :] if home != "/" and (text == home or text.startswith(home + "/")) else text


class ProcessControl(Builtin):
    """`restart`, `stop` or `start` (the verb is the action's name) on a process row."""

    def __init__(self, verb: str, config: Config, *, systemctl: Sequence[str] = ("systemctl",)) -> None:
        super().__init__(verb, config, scope="process", description=DESCRIPTIONS[verb])
        self.verb = verb
        self.systemctl = tuple(systemctl)
        self.grace = config.actions.kill_grace

    def knows(self, source: str) -> bool:
        config = self.config
        named = {e.name for e in config.pm2} | {e.name for e in config.systemd} | {e.name for e in config.docker}
        return source in named or (source == PROCESSES_SOURCE and bool(config.processes.watch))

    def describe(self) -> tuple[str, ...]:
        pm2 = "stopProcessId" if self.verb == "stop" else "restartProcessId"
        plain = {
            "restart": "SIGTERM, and its supervisor starts it again",
            "stop": f"SIGTERM, SIGKILL after {format_duration(self.grace)}",
            "start": "refused (opstui cannot launch it)",
        }[self.verb]
        return (
            f"PM2: {pm2} over rpc.sock; systemd: systemctl {self.verb} UNIT; Docker: POST /containers/ID/{self.verb}",
            f"a plain process: {plain}",
        )

    async def prepare(self, target: Target | None, params: Mapping[str, str]) -> Prepared:
        self.check_params(params)
        if target is None or target.source is None:
            raise ActionError(f"{self.verb} acts on a process row: name it, e.g. process.name=worker")
        manager = target.fields.get("manager")
        if manager == "pm2":
            return await self._prepare_pm2(target, target.source)
        if manager == "systemd":
            return self._prepare_systemd(target, target.source)
        if manager == "docker":
            return await self._prepare_docker(target, target.source)
        if manager == "process":
            return await self._prepare_plain(target)
        raise ActionError(f"{self.verb} cannot act on a process managed by {manager}")

    # ----------------------------------------------------------------------------------------------- PM2

    async def _prepare_pm2(self, target: Target, source: str) -> Prepared:
        from opstui.sources.pm2 import PM2Client

        home = find(self.config.pm2, source, "[[pm2]]").home
        client = PM2Client(home, timeout=LOOK_TIMEOUT)
        try:
            found = await client.named(target.name)
        except OpsError as exc:
            raise ActionError(f"PM2: {exc}") from None
        finally:
            await client.close()
        # A cluster's instances are rows of their own (key `pm2:api:3`): act on that one instance.
        instances = [p for p in found if target.key == f"{source}:{p.name}:{p.pm_id}"] or found
        if self.verb == "start":
            instances = [p for p in instances if p.status not in _RUNNING]
        elif self.verb == "stop":
            instances = [p for p in instances if p.status != "stopped"]
        if not instances:
            state = "online" if self.verb == "start" else "stopped"
            raise ActionError(f"PM2 has '{target.name}' {state} already: nothing to {self.verb}")
        ids = [p.pm_id for p in instances]
        which = f"pm_id{'s' if len(ids) > 1 else ''} {', '.join(map(str, ids))}"
        method = "stopProcessId" if self.verb == "stop" else "restartProcessId"
        shown = (
            f"PM2: {self.verb} process '{target.name}' ({which}) on {shown_home(home)}",
            f"{method} over {shown_home(home / 'rpc.sock')}, as `pm2 {self.verb}` does",
        )
        return Prepared(shown, partial(self._run_pm2, home, ids, target.name))

    async def _run_pm2(self, home: Path, ids: list[int], name: str, emit: Emit) -> Outcome:
        from opstui.sources.pm2 import PM2Client

        client = PM2Client(home, timeout=LOOK_TIMEOUT)
        try:
            for pm_id in ids:
                emit("info", f"PM2: {'stopping' if self.verb == 'stop' else self.verb + 'ing'} pm_id {pm_id}")
                await (client.stop_id(pm_id) if self.verb == "stop" else client.restart_id(pm_id))
            after = {p.pm_id: p for p in await client.processes()}
        except OpsError as exc:
            return Outcome(ok=False, detail=f"PM2: {exc}")
        finally:
            await client.close()
        states = [after.get(pm_id) for pm_id in ids]
        for pm_id, proc in zip(ids, states, strict=True):
            emit("info", _pm2_state(name, pm_id, proc))
        wanted = ("stopped",) if self.verb == "stop" else _RUNNING
        bad = [s.status if s else "gone" for s in states if s is None or s.status not in wanted]
        return Outcome(ok=not bad, detail=f"PM2 reports {name} {', '.join(bad)}" if bad else None)

    # ------------------------------------------------------------------------------------------- systemd

    def _prepare_systemd(self, target: Target, source: str) -> Prepared:
        user = find(self.config.systemd, source, "[[systemd]]").user
        unit = target.value("name")
        self._refuse_pointless(target)
        scope = ["--user"] if user else []
        argv = [*self.systemctl, *scope, self.verb, unit]
        shown = (f"systemd: {' '.join(shlex.quote(a) for a in argv)}",)
        show = [*self.systemctl, *scope, "show", "--property=ActiveState,SubState,MainPID,NRestarts", unit]
        return Prepared(shown, partial(self._run_systemctl, argv, show, unit))

    async def _run_systemctl(self, argv: list[str], show: list[str], unit: str, emit: Emit) -> Outcome:
        env = {**os.environ, "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0", "LC_ALL": "C"}
        outcome = await run_program(argv, emit, cwd=Path("/"), env=env, grace=self.grace)
        if outcome.ok:
            from opstui.sources._command import run_command

            with contextlib.suppress(OpsError):
                status, out, _ = await run_command(show, env=env)
                values = dict(line.partition("=")[::2] for line in out.decode(errors="replace").splitlines())
                if status == 0 and values.get("ActiveState"):
                    pid = values.get("MainPID", "0")
                    emit(
                        "info",
                        f"{unit}: {values['ActiveState']} ({values.get('SubState', '?')})"
                        + (f", pid {pid}" if pid not in ("", "0") else ""),
                    )
        return outcome

    # -------------------------------------------------------------------------------------------- Docker

    async def _prepare_docker(self, target: Target, source: str) -> Prepared:
        socket = find(self.config.docker, source, "[[docker]]").socket
        name = target.value("name")
        inspect = await self._docker(socket, "GET", f"/containers/{name}/json")
        if inspect is None:
            raise ActionError(f"Docker has no container named '{name}' (any more)")
        container_id = str(inspect.get("Id") or "")
        running = (inspect.get("State") or {}).get("Status") in ("running", "restarting")
        if self.verb == "start" and running:
            raise ActionError(f"Docker has '{name}' running already: nothing to start")
        if self.verb == "stop" and not running:
            raise ActionError(f"Docker has '{name}' stopped already: nothing to stop")
        short = container_id[:12]
        shown = (
            f"Docker: {self.verb} container '{name}' (id {short}) on {socket}",
            f"POST /containers/{short}/{self.verb}, waiting as long as the container's stop timeout says",
        )
        return Prepared(shown, partial(self._run_docker, socket, container_id, name))

    async def _run_docker(self, socket: Path, container_id: str, name: str, emit: Emit) -> Outcome:
        emit("info", f"Docker: POST /containers/{container_id[:12]}/{self.verb}")
        try:
            await self._docker(socket, "POST", f"/containers/{container_id}/{self.verb}")
            inspect = await self._docker(socket, "GET", f"/containers/{container_id}/json")
        except ActionError as exc:
            return Outcome(ok=False, detail=str(exc))
        state = (inspect or {}).get("State") or {}
        status = state.get("Status", "gone")
        emit("info", f"{name}: {status}" + (f", pid {state['Pid']}" if state.get("Pid") else ""))
        wanted = ("exited", "created") if self.verb == "stop" else ("running",)
        return Outcome(ok=status in wanted, detail=None if status in wanted else f"Docker reports {name} {status}")

    async def _docker(self, socket: Path, method: str, path: str) -> dict[str, Any] | None:
        """One Engine API request: the JSON answer (None for 404), or ActionError with the engine's message."""
        from opstui._httpx import httpx
        from opstui.sources.docker import engine_client, transport_problem

        try:
            async with engine_client(socket, self.timeout) as client:
                response = await client.request(method, path)
        except httpx.TimeoutException:
            raise ActionError(f"the Docker engine at {socket} did not answer {method} {path} in time") from None
        except httpx.TransportError as exc:
            raise ActionError(transport_problem(exc, socket)) from None
        if response.status_code == 404:
            return None
        if response.status_code == 304:  # already in the wanted state
            return {}
        if response.status_code >= 300:
            try:
                message = str(response.json().get("message") or "")
            except ValueError:
                message = response.text[:200]
            raise ActionError(f"the Docker engine answered {method} {path} with HTTP {response.status_code}: {message}")
        if not response.content:
            return {}
        answer = response.json()
        # Only the state is kept: an inspect answer also holds the container's environment.
        return {"Id": answer.get("Id"), "State": answer.get("State")} if isinstance(answer, dict) else {}

    # ------------------------------------------------------------------------------------- plain processes

    async def _prepare_plain(self, target: Target) -> Prepared:
        watched = find(self.config.processes.watch, target.name, "[[processes.watch]]")
        if self.verb == "start":
            how = "process_name" if watched.process_name else "cmdline" if watched.cmdline else "pidfile"
            raise ActionError(
                f"opstui cannot start '{target.name}': it only knows how to find it (by {how}), not how to "
                "launch it; start it with whatever runs it, or define an [[actions.command]] that does"
            )
        found = await _find(watched, getattr(target.row, "pid", None), getattr(target.row, "started_at", None))
        if found is None:
            raise ActionError(f"'{target.name}' is not running (no process found): nothing to {self.verb}")
        pid, started = found
        after = (
            "opstui does not start plain processes: its supervisor is expected to start it again, and opstui "
            f"waits up to {format_duration(BACK_WAIT)} to see it back"
            if self.verb == "restart"
            else "a supervisor watching it will start it again: to keep it down, stop it through the supervisor"
        )
        shown = (
            f"SIGTERM to '{target.name}' (pid {pid}), SIGKILL after {format_duration(self.grace)} if it still runs",
            after,
        )
        # A crash-looping process has a new pid every few seconds: the run signals the process found as
        # `target.name` then (by the same rule as the source, never a pid some other program reused).
        identity = (self.verb, PROCESSES_SOURCE, target.name)
        return Prepared(shown, partial(self._run_plain, pid, started, watched), identity=identity)

    async def _run_plain(self, pid: int, started: float, watched: WatchedProcessConfig, emit: Emit) -> Outcome:
        name = watched.name
        if not _same_process(pid, started):
            found = await _find(watched, None, None)
            if found is None:
                return Outcome(ok=False, detail=f"{name} is not running any more (pid {pid} exited): nothing was sent")
            pid, started = found
            emit("info", f"{name} restarted since the plan was shown: it is pid {pid} now")
        emit("info", f"SIGTERM to {name} (pid {pid})")
        try:
            os.kill(pid, signal.SIGTERM)
            if not await asyncio.to_thread(_wait_gone, pid, started, self.grace):
                emit("info", f"still running after {format_duration(self.grace)}: SIGKILL to pid {pid}")
                os.kill(pid, signal.SIGKILL)
                await asyncio.to_thread(_wait_gone, pid, started, self.grace)
        except ProcessLookupError:
            pass  # it exited on its own in between: the same end
        except PermissionError:
            return Outcome(
                ok=False, detail=f"permission denied: {name} (pid {pid}) runs as another user; run opstui as that user"
            )
        emit("info", f"{name} (pid {pid}) has exited")
        if self.verb == "stop":
            return Outcome(ok=True)
        return await self._wait_back(watched, pid, emit)

    async def _wait_back(self, watched: WatchedProcessConfig, old_pid: int, emit: Emit) -> Outcome:
        """Find the process again the way the source does, until its supervisor has started a new one."""
        deadline = time.monotonic() + BACK_WAIT
        while time.monotonic() < deadline:
            found = await _find(watched, None, None)
            if found is not None and found[0] != old_pid:
                emit("info", f"{watched.name} is running again as pid {found[0]}")
                return Outcome(ok=True)
            await asyncio.sleep(0.3)
        return Outcome(
            ok=False,
            detail=f"{watched.name} stopped, but nothing started it again within {format_duration(BACK_WAIT)}: "
            "is a supervisor watching it?",
        )

    def _refuse_pointless(self, target: Target) -> None:
        status = getattr(target.row, "status", None)
        if status == "missing":
            raise ActionError(f"{target.fields.get('manager')} does not know '{target.name}': nothing to {self.verb}")
        if self.verb == "start" and status == "online":
            raise ActionError(f"'{target.name}' is running already: nothing to start")
        if self.verb == "stop" and status == "stopped":
            raise ActionError(f"'{target.name}' is stopped already: nothing to stop")


def _pm2_state(name: str, pm_id: int, proc: PM2Process | None) -> str:
    if proc is None:
        return f"{name} (pm_id {pm_id}) is gone from PM2's list"
    pid = f", pid {proc.pid}" if proc.pid else ""
    restarts = f", {proc.restart_time} restarts" if proc.restart_time is not None else ""
    return f"{name} (pm_id {pm_id}): {proc.status}{pid}{restarts}"


async def _find(watched: WatchedProcessConfig, pid: int | None, started: float | None) -> tuple[int, float] | None:
    """(pid, start time) of the watched process: the one the screen showed while it runs, else the one found
    now by the same rule as the source (its name, command line or pidfile)."""
    if pid is not None and started is not None and _same_process(pid, started):
        return pid, started
    from opstui.sources.processes import ProcessesSource, Watched

    source = ProcessesSource(PROCESSES_SOURCE, watch=[Watched.of(watched)], interval=1.0, timeout=5.0)
    (found,) = (await source.collect()).processes
    return (found.pid, found.started_at) if found.pid is not None and found.started_at is not None else None


def _same_process(pid: int, started: float) -> bool:
    """Whether `pid` is still the process the source saw (same start time), not a new one with a reused pid."""
    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - started) < 0.05 and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _wait_gone(pid: int, started: float, seconds: float) -> bool:
    """Wait up to `seconds` for the process to end (a zombie waiting for its parent counts as ended)."""
    deadline = time.monotonic() + seconds
    while _same_process(pid, started):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
