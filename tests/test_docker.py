"""Docker: recorded Engine API answers replayed by a real HTTP server on a unix socket (no engine runs here)."""

from __future__ import annotations

import calendar
import json
import socket
import socketserver
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from conftest import EngineFor
from opstui.check import render_json
from opstui.config import load_config
from opstui.sources import build_sources
from opstui.sources.docker import DockerSource

RECORDINGS = Path(__file__).parent / "recordings" / "docker"
SECRET = "s3cr3t-VALUE-not-real-d0ck"
IDS = {"api": "a1b2c3d4e5f6", "cache": "c4c4c4c4c4c4", "worker": "b2b2b2b2b2b2", "batch": "d3d3d3d3d3d3"}


def recorded(name: str) -> Any:
    return json.loads((RECORDINGS / name).read_text())


class FakeEngine:
    """An HTTP server on a unix socket answering the Engine API paths opstui asks, from recordings."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.answers: dict[str, tuple[int, bytes]] = {}
        self.requests: list[str] = []
        self.answer("/containers/json", recorded("containers.json"))
        for name, short in IDS.items():
            full = next(c["Id"] for c in recorded("containers.json") if c["Names"] == [f"/{name}"])
            assert full.startswith(short)
            self.answer(f"/containers/{full}/json", recorded(f"inspect-{name}.json"))
        self.answer(f"/containers/{self.id('api')}/stats", recorded("stats-api-1.json"))
        self.answer(f"/containers/{self.id('cache')}/stats", recorded("stats-cache.json"))
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                fake.requests.append(self.path)
                status, body = fake.answers.get(urlsplit(self.path).path, (404, b'{"message":"No such container"}'))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def address_string(self) -> str:
                return "unix"

            def log_message(self, format: str, *args: Any) -> None:
                return

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

        self.server = Server(str(path), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def id(self, name: str) -> str:
        return next(c["Id"] for c in recorded("containers.json") if c["Names"] == [f"/{name}"])

    def answer(self, path: str, value: Any, status: int = 200) -> None:
        self.answers[path] = (status, value if isinstance(value, bytes) else json.dumps(value).encode())

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


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
