"""Docker: recorded Engine API answers replayed by a real HTTP server on a unix socket (no engine runs here)."""

from __future__ import annotations

import calendar
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import EngineFor
from docker_replay import RECORDINGS, FakeEngine, recorded
from opstui.check import render_json
from opstui.config import load_config
from opstui.sources import build_sources
from opstui.sources.docker import DockerSource

SECRET = "s3cr3t-VALUE-not-real-d0ck"


@pytest.fixture
def engine_api(tmp_path: Path) -> Iterator[FakeEngine]:
    server = FakeEngine(tmp_path / "docker.sock")
    yield server
    server.close()


def source(path: Path, containers: list[str] | None = None) -> DockerSource:
    return DockerSource(socket=path, containers=containers or [], interval=5, timeout=3)


async def test_containers_show_what_the_engine_says(engine_api: FakeEngine, engine_for: EngineFor) -> None:
    docker = source(engine_api.path, ["api", "cache", "worker", "batch", "ghost"])
    engine = engine_for(docker)
    snap = await engine.collect_once()
    procs = {p.name: p for p in snap.processes}
    api = procs["api"]
    assert (api.status, api.pid, api.restarts_total, api.manager) == ("online", 4321, 3, "docker")
    assert api.started_at == calendar.timegm((2024, 5, 14, 10, 32, 1, 0, 0, 0)) + 0.5
    assert api.rss_bytes == 157286400 - 44236800, "cgroup v2: usage minus inactive_file, as `docker stats`"
    assert procs["cache"].rss_bytes == 73400320 - 31457280, "cgroup v1: usage minus total_inactive_file"
    assert api.log_files == ("/var/lib/docker/containers/a1b2/a1b2-json.log",)
    assert api.cpu_percent is None, "CPU needs two looks"
    assert (procs["worker"].status, procs["worker"].pid, procs["worker"].restarts_total) == ("crash-loop", None, 41)
    assert procs["worker"].rss_bytes is None
    assert procs["batch"].status == "errored", "exited 137"
    assert procs["ghost"].status == "missing"
    assert any("one-shot=true" in r and "stream=false" in r for r in engine_api.requests)
    # A second look: the container's CPU time over the host's, times the CPUs (what `docker stats` shows).
    engine_api.answer(f"/containers/{engine_api.id('api')}/stats", recorded("stats-api-2.json"))
    snap = await engine.collect_once()
    api = next(p for p in snap.processes if p.name == "api")
    assert api.cpu_percent == (96340000000 - 95840000000) / (7531460000000000 - 7531450000000000) * 2 * 100
    assert api.rss_bytes == 159383552 - 44236800


async def test_every_container_when_none_is_named_and_restarts_keep_counting(
    engine_api: FakeEngine, engine_for: EngineFor
) -> None:
    docker = source(engine_api.path)
    engine = engine_for(docker)
    snap = await engine.collect_once()
    assert sorted(p.name for p in snap.processes) == ["api", "batch", "cache", "worker"]
    worker = recorded("inspect-worker.json")
    for count, started in ((42, "2024-05-14T12:40:14.000000000Z"), (43, "2024-05-14T12:40:17.000000000Z")):
        worker["RestartCount"] = count
        worker["State"].update(Status="running", Running=True, Restarting=False, Pid=5000 + count, StartedAt=started)
        engine_api.answer(f"/containers/{engine_api.id('worker')}/json", worker)
        snap = await engine.collect_once()
    procs = {p.name: p for p in snap.processes}
    assert (procs["worker"].restarts_total, procs["worker"].restarts_last_hour) == (43, 2)
    # `docker restart` does not count in RestartCount; a new start time does in opstui's count.
    worker["State"]["StartedAt"] = "2024-05-14T12:50:00.000000000Z"
    engine_api.answer(f"/containers/{engine_api.id('worker')}/json", worker)
    snap = await engine.collect_once()
    worker_now = next(p for p in snap.processes if p.name == "worker")
    assert worker_now.restarts_total == 44
    assert worker_now.status == "crash-loop", "three restarts within minutes, though running right now"


async def test_the_containers_environment_and_command_line_appear_nowhere(
    engine_api: FakeEngine, engine_for: EngineFor
) -> None:
    assert SECRET in (RECORDINGS / "inspect-api.json").read_text()
    docker = source(engine_api.path)
    snap = await engine_for(docker).collect_once()
    assert SECRET not in repr(snap) + render_json(snap) + repr(vars(docker))


async def test_no_engine_refused_and_garbage_are_clear_errors_and_the_source_recovers(
    tmp_path: Path, engine_for: EngineFor
) -> None:
    path = tmp_path / "docker.sock"
    docker = source(path)
    engine = engine_for(docker)
    snap = await engine.collect_once()
    assert snap.sources["docker"].error == f"no Docker engine: {path} does not exist (is Docker installed and running?)"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens: what a crashed engine leaves
    snap = await engine.collect_once()
    assert snap.sources["docker"].error == f"the Docker engine is not running: {path} refuses connections"
    path.unlink()
    server = FakeEngine(path)
    try:
        server.answer("/containers/json", b"<html>It works!</html>")
        snap = await engine.collect_once()
        assert snap.sources["docker"].error == (
            f"{path} answered /containers/json with something that is not the Docker API"
        )
        server.answer("/containers/json", {"message": "client version 1.99 is too new"}, status=400)
        snap = await engine.collect_once()
        assert snap.sources["docker"].error == "the Docker engine answered /containers/json with HTTP 400"
        server.answer("/containers/json", recorded("containers.json"))
        snap = await engine.collect_once()
        assert snap.sources["docker"].ok and len(snap.processes) == 4
    finally:
        server.close()
        await docker.close()


async def test_config_builds_a_docker_source(engine_api: FakeEngine, write_config, engine_for: EngineFor) -> None:  # type: ignore[no-untyped-def]
    config = load_config(write_config(f'[[docker]]\nsocket = "{engine_api.path}"\ncontainers = ["api"]\n'))
    (docker,) = [s for s in build_sources(config) if s.kind == "docker"]
    snap = await engine_for(docker).collect_once()
    assert [(p.name, p.status) for p in snap.processes] == [("api", "online")]
    await docker.close()
