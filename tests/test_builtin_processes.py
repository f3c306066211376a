"""restart, stop and start through each manager: real PM2, a stand-in systemctl that records its arguments,
the replayed Docker Engine API, and plain processes under a real supervisor."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from docker_replay import FakeEngine, recorded
from opstui.errors import ActionError
from opstui.sources.systemd import SystemdSource
from pm2_sandbox import PM2Sandbox, find_pm2, wait_until

STEADY = "setInterval(() => {}, 1000)\n"
WORKER = {"process.name": "worker"}

# ------------------------------------------------------------------------------------------------------ PM2


@pytest.fixture
def pm2() -> Iterator[PM2Sandbox]:
    found, reason = find_pm2()
    if found is None:
        pytest.skip(f"no PM2 for these tests: {reason}")
    sandbox = PM2Sandbox(found)
    try:
        yield sandbox
    finally:
        sandbox.close()


def pm2_says(pm2: PM2Sandbox, name: str) -> dict:  # type: ignore[type-arg]
    """PM2's own account of one process (for comparing only: it carries the environment)."""
    return next(p for p in json.loads(pm2.run("jlist").stdout.splitlines()[-1]) if p["name"] == name)


async def test_pm2_restart_counts_one_restart_and_lands_in_the_audit_log(pm2: PM2Sandbox, action_world) -> None:  # type: ignore[no-untyped-def]
    pm2.start(pm2.app("worker", STEADY), "worker")
    before = pm2_says(pm2, "worker")
    world = await action_world(f'[[pm2]]\nhome = "{pm2.home}"\nevents = false\n')

    plan = await world.plan("restart", **WORKER)
    assert plan.shown == (
        f"PM2: restart process 'worker' (pm_id {before['pm_id']}) on {pm2.home}",
        f"restartProcessId over {pm2.home / 'rpc.sock'}, as `pm2 restart` does",
    )
    done = await world.start(plan)

    after = pm2_says(pm2, "worker")
    assert done.result.ok, done.result
    assert after["pm2_env"]["restart_time"] == before["pm2_env"]["restart_time"] + 1
    assert after["pid"] != before["pid"] and after["pm2_env"]["status"] == "online"
    assert done.lines[-1] == f"worker (pm_id {before['pm_id']}): online, pid {after['pid']}, 1 restarts"
    entry = done.entry
    assert (entry.action, entry.kind, entry.target, entry.result) == ("restart", "builtin", "pm2:worker", "ok")
    assert entry.args == plan.shown and entry.actor_kind == "local"


async def test_pm2_stop_then_start_and_what_is_pointless_is_refused(pm2: PM2Sandbox, action_world) -> None:  # type: ignore[no-untyped-def]
    pm2.start(pm2.app("worker", STEADY), "worker")
    world = await action_world(f'[[pm2]]\nhome = "{pm2.home}"\nevents = false\n')
    with pytest.raises(ActionError, match=r"PM2 has 'worker' online already: nothing to start"):
        await world.plan("start", **WORKER)
    assert (await world.run("stop", **WORKER)).result.ok
    assert pm2_says(pm2, "worker")["pm2_env"]["status"] == "stopped"
    await world.look()
    with pytest.raises(ActionError, match=r"PM2 has 'worker' stopped already: nothing to stop"):
        await world.plan("stop", **WORKER)
    done = await world.run("start", **WORKER)
    assert done.result.ok and pm2_says(pm2, "worker")["pm2_env"]["status"] == "online"
    assert [e.result for e in world.actions.audit.recent(10)] == ["refused", "ok", "refused", "ok"]


async def test_one_restart_at_a_time_per_process(pm2: PM2Sandbox, action_world) -> None:  # type: ignore[no-untyped-def]
    pm2.start(pm2.app("worker", STEADY), "worker")
    world = await action_world(f'[[pm2]]\nhome = "{pm2.home}"\nevents = false\n')
    first = await world.plan("restart", **WORKER)
    second = await world.plan("stop", **WORKER)
    run = await world.actions.start(first, first.confirmation("pressed Confirm"))
    with pytest.raises(ActionError, match=r"restart on pm2:worker is already running"):
        await world.actions.start(second, second.confirmation("pressed Confirm"))
    assert (await run.wait()).ok


# -------------------------------------------------------------------------------------------------- systemd


class StandInSystemctl:
    """A `systemctl` that notes every call's arguments and answers `show` like systemd (bot.service's block)."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "systemctl"
        self.calls = directory / "calls.txt"
        show = Path(__file__).parent / "recordings" / "systemd" / "1-running.txt"
        self.path.write_text(
            "#!/bin/sh\n"
            f'echo "$@" >> {shlex.quote(str(self.calls))}\n'
            'for arg in "$@"; do\n'
            f'  if [ "$arg" = show ]; then sed "/^$/q" {shlex.quote(str(show))}; exit 0; fi\n'
            '  if [ "$arg" = nosuch.service ]; then echo "Failed to restart nosuch.service: Unit not found." >&2; '
            "exit 5; fi\n"
            "done\n"
        )
        self.path.chmod(0o755)

    def argv(self) -> list[list[str]]:
        return [line.split() for line in self.calls.read_text().splitlines()]


async def test_systemd_runs_systemctl_as_shown_and_reports_the_unit(tmp_path: Path, action_world) -> None:  # type: ignore[no-untyped-def]
    systemctl = StandInSystemctl(tmp_path)
    units = ["bot.service", "crm-sync"]
    reads = SystemdSource(units=units, user=True, interval=5, timeout=3, command=[str(systemctl.path)])
    world = await action_world(
        '[[systemd]]\nunits = ["bot.service", "crm-sync"]\nuser = true\n',
        systemctl=(str(systemctl.path),),
        sources=(reads,),
    )
    plan = await world.plan("restart", **{"process.name": "bot.service"})
    assert plan.shown == (f"systemd: {systemctl.path} --user restart bot.service",)
    done = await world.start(plan)

    assert done.result.ok and done.result.exit_status == 0
    assert systemctl.argv()[-2:] == [
        ["--user", "restart", "bot.service"],
        ["--user", "show", "--property=ActiveState,SubState,MainPID,NRestarts", "bot.service"],
    ]
    assert done.lines == ["bot.service: active (running), pid 812"]
    with pytest.raises(ActionError, match=r"'bot.service' is running already: nothing to start"):
        await world.plan("start", **{"process.name": "bot.service"})


async def test_systemd_failure_shows_what_systemctl_said(tmp_path: Path, action_world) -> None:  # type: ignore[no-untyped-def]
    systemctl = StandInSystemctl(tmp_path)
    reads = SystemdSource(units=["nosuch.service"], interval=5, timeout=3, command=[str(systemctl.path)])
    world = await action_world(
        '[[systemd]]\nunits = ["nosuch.service"]\n', systemctl=(str(systemctl.path),), sources=(reads,)
    )
    with pytest.raises(ActionError, match=r"systemd does not know 'nosuch.service': nothing to restart"):
        await world.plan("restart", **{"process.name": "nosuch.service"})


# --------------------------------------------------------------------------------------------------- Docker


@pytest.fixture
def engine_api(tmp_path: Path) -> Iterator[FakeEngine]:
    server = FakeEngine(tmp_path / "docker.sock")
    yield server
    server.close()


async def test_docker_restart_posts_to_the_engine_and_reports_the_container(  # type: ignore[no-untyped-def]
    engine_api: FakeEngine, action_world
) -> None:
    world = await action_world(f'[[docker]]\nsocket = "{engine_api.path}"\ncontainers = ["api", "batch"]\n')
    api_id = engine_api.id("api")
    plan = await world.plan("restart", **{"process.name": "api"})
    assert plan.shown[0] == f"Docker: restart container 'api' (id {api_id[:12]}) on {engine_api.path}"
    done = await world.start(plan)
    assert done.result.ok, done.result
    assert engine_api.posts == [f"/containers/{api_id}/restart"]
    assert done.lines == [f"Docker: POST /containers/{api_id[:12]}/restart", "api: running, pid 4321"]
    assert done.entry.result == "ok"

    with pytest.raises(ActionError, match=r"Docker has 'api' running already: nothing to start"):
        await world.plan("start", **{"process.name": "api"})
    with pytest.raises(ActionError, match=r"Docker has 'batch' stopped already: nothing to stop"):
        await world.plan("stop", **{"process.name": "batch"})


async def test_docker_stop_waits_for_the_engine_and_an_engine_error_is_the_reason(  # type: ignore[no-untyped-def]
    engine_api: FakeEngine, action_world
) -> None:
    world = await action_world(f'[[docker]]\nsocket = "{engine_api.path}"\ncontainers = ["api"]\n')
    api_id = engine_api.id("api")
    stopped = recorded("inspect-api.json")
    stopped["State"] = {**stopped["State"], "Status": "exited", "Running": False, "Pid": 0}
    engine_api.on_post[f"/containers/{api_id}/stop"] = lambda: engine_api.answer(f"/containers/{api_id}/json", stopped)
    done = await world.run("stop", **{"process.name": "api"})
    assert done.result.ok and done.lines[-1] == "api: exited"

    engine_api.answer(f"/containers/{api_id}/json", recorded("inspect-api.json"))
    engine_api.post_answers[f"/containers/{api_id}/restart"] = (500, b'{"message":"cannot kill container: busy"}')
    await world.look()
    done = await world.run("restart", **{"process.name": "api"})
    assert done.result.result == "failed"
    assert done.result.reason == (
        f"the Docker engine answered POST /containers/{api_id}/restart with HTTP 500: cannot kill container: busy"
    )


# ----------------------------------------------------------------------------------------- plain processes

SUPERVISOR = """
import subprocess, sys, time
child = [sys.executable, "-c", "import time\\nwhile True: time.sleep(1)", sys.argv[1]]
while True:
    proc = subprocess.Popen(child)
    proc.wait()
    time.sleep(0.5)
"""


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[str]:
    """A process under a tiny supervisor that starts it again whenever it exits; yields its marker."""
    marker = f"opstui-test-{uuid.uuid4().hex[:8]}"
    script = tmp_path / "supervisor.py"
    script.write_text(SUPERVISOR)
    # The marker is not its last argument: the watch rule must find the child, never the supervisor itself.
    supervisor = subprocess.Popen([sys.executable, str(script), marker, "supervisor"])
    wait_until(lambda: bool(running_with(marker)))
    try:
        yield marker
    finally:
        for child in psutil.Process(supervisor.pid).children():
            child.kill()
        supervisor.kill()
        supervisor.wait()


def running_with(marker: str) -> set[int]:
    """The pids of live processes whose command line ends with the marker."""
    return {
        p.pid
        for p in psutil.process_iter(["cmdline", "status"])
        if (p.info["cmdline"] or [""])[-1] == marker and p.info["status"] != psutil.STATUS_ZOMBIE
    }


def watch(marker: str, grace: str = "5s") -> str:
    return (
        f'[actions]\nkill_grace = "{grace}"\n\n[processes]\n'
        f'[[processes.watch]]\nname = "worker"\ncmdline = " {marker}$"\n'
    )


async def test_a_plain_restart_is_sigterm_and_its_supervisor_brings_it_back(supervised: str, action_world) -> None:  # type: ignore[no-untyped-def]
    world = await action_world(watch(supervised))
    assert world.snapshot is not None
    (worker,) = world.snapshot.processes
    plan = await world.plan("restart", **WORKER)
    assert plan.shown == (
        f"SIGTERM to 'worker' (pid {worker.pid}), SIGKILL after 5s if it still runs",
        "opstui does not start plain processes: its supervisor is expected to start it again, and opstui waits "
        "up to 15s to see it back",
    )
    done = await world.start(plan)
    assert done.result.ok, done.result
    assert done.lines[:2] == [f"SIGTERM to worker (pid {worker.pid})", f"worker (pid {worker.pid}) has exited"]
    new_pid = int(done.lines[2].removeprefix("worker is running again as pid "))
    assert new_pid != worker.pid and psutil.pid_exists(new_pid)
    assert done.entry.result == "ok" and done.entry.target == "processes:worker"


async def test_a_plain_start_is_refused_with_the_reason(supervised: str, action_world) -> None:  # type: ignore[no-untyped-def]
    world = await action_world(watch(supervised))
    with pytest.raises(ActionError, match=r"opstui cannot start 'worker': it only knows how to find it \(by cmdline\)"):
        await world.plan("start", **WORKER)
    assert world.last_entry().result == "refused"


IGNORES_SIGTERM = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True: time.sleep(1)"


@pytest.fixture
def lone() -> Iterator[Callable[[str], subprocess.Popen[bytes]]]:
    """`lone(code)`: a process nobody supervises, found by its marker (the last argument)."""
    started: list[subprocess.Popen[bytes]] = []

    def start(code: str) -> subprocess.Popen[bytes]:
        marker = f"opstui-test-{uuid.uuid4().hex[:8]}"
        proc = subprocess.Popen(
            [sys.executable, "-c", f"print('ready', flush=True)\n{code}", marker], stdout=subprocess.PIPE
        )
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"  # its signal handlers are set
        proc.args = marker  # type: ignore[misc]
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()
        proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]


async def test_a_plain_stop_ends_a_process_that_ignores_sigterm(lone, action_world) -> None:  # type: ignore[no-untyped-def]
    proc = lone(IGNORES_SIGTERM)
    world = await action_world(watch(proc.args, grace="1s"))
    done = await world.run("stop", **WORKER)
    assert done.result.ok, done.result
    assert done.lines[1] == f"still running after 1s: SIGKILL to pid {proc.pid}"
    assert proc.poll() == -signal.SIGKILL


async def test_a_plain_restart_without_a_supervisor_says_nothing_started_it(  # type: ignore[no-untyped-def]
    lone, action_world, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("opstui.actions.processes.BACK_WAIT", 1.0)
    proc = lone("import time\nwhile True: time.sleep(1)")
    world = await action_world(watch(proc.args))
    done = await world.run("restart", **WORKER)
    assert done.result.result == "failed"
    assert done.result.reason == "worker stopped, but nothing started it again within 1s: is a supervisor watching it?"


async def test_a_crash_looping_process_is_found_again_by_its_rule_never_by_a_stale_pid(  # type: ignore[no-untyped-def]
    supervised: str, action_world
) -> None:
    world = await action_world(watch(supervised))
    assert world.snapshot is not None
    old = world.snapshot.processes[0].pid
    assert old is not None
    psutil.Process(old).kill()  # it crashed; the supervisor starts a new one; the screen still shows the old
    wait_until(lambda: not psutil.pid_exists(old) or psutil.Process(old).status() == psutil.STATUS_ZOMBIE)
    wait_until(lambda: running_with(supervised) - {old})
    plan = await world.plan("restart", **WORKER)
    new = int(plan.shown[0].split("(pid ")[1].split(")")[0])
    assert new != old and new in running_with(supervised)

    psutil.Process(new).kill()  # and again, between showing and running
    wait_until(lambda: running_with(supervised) - {old, new})
    await world.look()
    done = await world.start(plan)
    assert done.result.ok, done.result
    assert done.lines[0].startswith("worker restarted since the plan was shown: it is pid ")
    assert str(new) not in done.lines[1], "the signal went to the process running as worker, not to a stale pid"


def test_this_module_s_supervisor_script_is_valid_python() -> None:
    compile(textwrap.dedent(SUPERVISOR), "supervisor.py", "exec")


def opstui_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "opstui", "-c", str(config), *args], capture_output=True, text=True, timeout=60
    )


def test_the_cli_lists_and_runs_the_built_ins(supervised: str, write_config) -> None:  # type: ignore[no-untyped-def]
    config = write_config(watch(supervised))
    listed = opstui_cli(config, "action", "list")
    assert listed.returncode == 0, listed.stderr
    assert "restart  (builtin, process, key r, asks for confirmation)" in listed.stdout.splitlines()
    assert "queue-move" not in listed.stdout, "no Redis queue is watched: nothing for it to move"

    refused = opstui_cli(config, "action", "run", "restart", "--arg", "process.name=worker")
    assert refused.returncode == 2 and "pass --yes to confirm" in refused.stderr

    ran = opstui_cli(config, "action", "run", "restart", "--arg", "process.name=worker", "--yes")
    assert ran.returncode == 0, ran.stderr
    assert ran.stderr.startswith("restart will run:\n  SIGTERM to 'worker' (pid ")
    assert "opstui: worker is running again as pid " in ran.stderr
    audit = json.loads(opstui_cli(config, "audit", "--json").stdout)
    assert [(e["action"], e["result"], e["confirmation"]) for e in audit] == [
        ("restart", "refused", None),
        ("restart", "ok", "--yes"),
    ]
