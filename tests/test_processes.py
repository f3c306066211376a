"""Plain processes: found by name, command line or pidfile; a restart is a new PID; figures are psutil's own."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from conftest import EngineFor
from opstui.config import ConfigError, load_config
from opstui.model import ProcessInfo, Snapshot
from opstui.sources import build_sources
from opstui.sources.processes import ProcessesSource, Watched

SLEEPER = "import sys, time; time.sleep(600)"
BUSY = "import time\nwhile True: pass"


class Spawner:
    """Real processes with recognisable command lines, all killed after the test."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def run(self, marker: str, code: str = SLEEPER, executable: str = sys.executable) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([executable, "-c", code, marker])
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait()


@pytest.fixture
def spawn() -> Iterator[Spawner]:
    spawner = Spawner()
    yield spawner
    spawner.close()


def by_name(snapshot: Snapshot) -> dict[str, ProcessInfo]:
    return {p.name: p for p in snapshot.processes}


async def test_a_process_found_by_command_line_shows_what_psutil_says(
    spawn: Spawner, tmp_path: Path, engine_for: EngineFor
) -> None:
    marker = f"opstui-test-worker-{time.monotonic_ns()}"
    proc = spawn.run(marker)
    source = ProcessesSource(
        watch=[Watched("worker", cmdline=re.compile(re.escape(marker)), log_files=("/srv/w.log",))],
        interval=5,
        timeout=3,
    )
    engine = engine_for(source)
    ps = psutil.Process(proc.pid)
    before = ps.memory_info().rss  # the interpreter may still be starting: its RSS grows while we look
    first = by_name(await engine.collect_once())["worker"]
    after = ps.memory_info().rss
    assert (first.status, first.pid, first.manager, first.key) == ("online", proc.pid, "process", "processes:worker")
    assert first.started_at == ps.create_time()
    assert first.rss_bytes is not None and before * 0.95 <= first.rss_bytes <= after * 1.05
    assert first.restarts_total == 0 and first.log_files == ("/srv/w.log",)
    assert first.cpu_percent is None, "CPU needs two looks at the same process"
    second = by_name(await engine.collect_once())["worker"]
    assert second.cpu_percent is not None


async def test_a_new_pid_is_a_restart_and_a_crash_loop_stands_out(spawn: Spawner, engine_for: EngineFor) -> None:
    marker = f"opstui-test-crasher-{time.monotonic_ns()}"
    source = ProcessesSource(watch=[Watched("crasher", cmdline=re.compile(marker))], interval=5, timeout=3)
    engine = engine_for(source)
    seen = []
    for _ in range(4):
        proc = spawn.run(marker)
        seen.append(by_name(await engine.collect_once())["crasher"])
        proc.kill()  # and not reaped yet: a zombie has exited, it is not the process to report
        deadline = time.monotonic() + 5
        while psutil.Process(proc.pid).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "the killed process did not exit"
            await asyncio.sleep(0.01)
        seen.append(by_name(await engine.collect_once())["crasher"])
    assert [p.status for p in seen[:2]] == ["online", "missing"]
    assert [p.restarts_total for p in seen] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert seen[-1].restarts_last_hour == 3
    assert seen[-2].status == "crash-loop" and seen[-1].status == "crash-loop"
    assert seen[-1].pid is None


async def test_the_oldest_match_is_the_process_and_forked_children_do_not_count(
    spawn: Spawner, engine_for: EngineFor
) -> None:
    marker = f"opstui-test-master-{time.monotonic_ns()}"
    forks = (
        "import subprocess, sys, time; "
        f"subprocess.Popen([sys.executable, '-c', {SLEEPER!r}, '{marker}']); time.sleep(600)"
    )
    master = spawn.run(marker, forks)
    deadline = time.monotonic() + 10
    while not psutil.Process(master.pid).children():
        assert time.monotonic() < deadline, "the master did not fork"
        await asyncio.sleep(0.05)
    later = spawn.run(marker)
    source = ProcessesSource(watch=[Watched("app", cmdline=re.compile(marker))], interval=5, timeout=3)
    app = by_name(await engine_for(source).collect_once())["app"]
    assert app.pid == master.pid
    for child in psutil.Process(master.pid).children():
        child.kill()
    assert later.pid != app.pid


async def test_by_executable_name_and_by_pidfile(spawn: Spawner, tmp_path: Path, engine_for: EngineFor) -> None:
    proc = spawn.run("pidfile-test")
    pidfile = tmp_path / "app.pid"
    pidfile.write_text(f"{proc.pid}\n")
    watch = [
        Watched("by pidfile", pidfile=pidfile),
        Watched("stale pidfile", pidfile=tmp_path / "stale.pid"),
        Watched("no pidfile", pidfile=tmp_path / "missing.pid"),
        Watched("by name", process_name="opstui-no-such-executable"),
    ]
    (tmp_path / "stale.pid").write_text("4194303\n")
    source = ProcessesSource(watch=watch, interval=5, timeout=3)
    engine = engine_for(source)
    snap = await engine.collect_once()
    procs = by_name(snap)
    assert procs["by pidfile"].pid == proc.pid and procs["by pidfile"].status == "online"
    assert procs["stale pidfile"].status == "missing" and procs["no pidfile"].status == "missing"
    assert procs["by name"].status == "missing"
    assert snap.sources["processes"].ok
    assert snap.sources["processes"].detail == (
        f"{tmp_path / 'stale.pid'} names PID 4194303, which is not running; {tmp_path / 'missing.pid'} does not exist"
    )


async def test_opstui_never_reports_itself(engine_for: EngineFor) -> None:
    me = psutil.Process()
    mine = ProcessesSource(
        watch=[Watched("me", cmdline=re.compile(re.escape(" ".join(me.cmdline()))))], interval=5, timeout=3
    )
    assert by_name(await engine_for(mine).collect_once())["me"].pid != me.pid


async def test_a_process_found_by_its_executable_name(spawn: Spawner, tmp_path: Path, engine_for: EngineFor) -> None:
    exe = tmp_path / "opstui-test-exe"
    exe.symlink_to(sys.executable)
    proc = spawn.run("by-name", executable=str(exe))
    source = ProcessesSource(watch=[Watched("svc", process_name="opstui-test-exe")], interval=5, timeout=3)
    found = by_name(await engine_for(source).collect_once())["svc"]
    assert (found.status, found.pid) == ("online", proc.pid)


def test_config_needs_exactly_one_way_to_find_a_process(write_config) -> None:  # type: ignore[no-untyped-def]
    path = write_config('[[processes.watch]]\nname = "bot"\ncmdline = "bot"\npidfile = "/run/bot.pid"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == (
        f"{path}:4: processes.watch[0]: give exactly one of process_name, cmdline or pidfile (got cmdline, pidfile)"
    )
    path = write_config('[[processes.watch]]\nname = "bot"\ncmdline = "bot("\n')
    with pytest.raises(ConfigError, match=r"processes.watch\[0\].cmdline: not a valid regular expression"):
        load_config(path)
    path = write_config(
        '[[processes.watch]]\nname = "a"\nprocess_name = "x"\n[[processes.watch]]\nname = "a"\npidfile = "/p"\n'
    )
    with pytest.raises(ConfigError, match=re.escape("two [[processes.watch]] entries are named 'a'")):
        load_config(path)


async def test_config_builds_one_processes_source(spawn: Spawner, write_config, engine_for: EngineFor) -> None:  # type: ignore[no-untyped-def]
    marker = f"opstui-test-cfg-{time.monotonic_ns()}"
    proc = spawn.run(marker)
    config = load_config(
        write_config(f'[processes]\ninterval = "2s"\n[[processes.watch]]\nname = "w"\ncmdline = "{marker}"\n')
    )
    (source,) = [s for s in build_sources(config) if s.kind == "processes"]
    assert source.interval == 2
    assert by_name(await engine_for(source).collect_once())["w"].pid == proc.pid
