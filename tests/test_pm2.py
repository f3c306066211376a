"""PM2, against a real PM2 daemon: figures equal to PM2's own, crashes seen as they happen, secrets never kept."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path

import psutil
import pytest

from conftest import EngineFor
from opstui.check import render_json, render_text
from opstui.config import load_config
from opstui.errors import ActionError
from opstui.model import ProcessInfo, Snapshot
from opstui.sources import build_sources
from opstui.sources._pm2_rpc import AmpParser, RpcConnection, decode_json, encode_message
from opstui.sources.pm2 import PM2Client, PM2Source, read_jlist_output
from pm2_sandbox import PM2Sandbox, wait_until

SECRET = "s3cr3t-VALUE-not-real-7f3a"
STEADY = "setInterval(() => {}, 1000)\n"
# Dies 0.3 s after each start, saying something secret-shaped on its way out.
CRASHER = "setTimeout(() => { console.error('dying: api_key=' + 'abc123def456'); process.exit(1) }, 300)\n"


def jlist(pm2: PM2Sandbox) -> dict[str, dict]:  # type: ignore[type-arg]
    """What PM2 itself says, by name (the raw CLI output, secrets and all: only for comparing)."""
    return {p["name"]: p for p in json.loads(pm2.run("jlist").stdout.splitlines()[-1])}


async def wait_for(predicate, limit: float = 15.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not reached within {limit}s"
        await asyncio.sleep(0.02)


def settled(pm2: PM2Sandbox) -> None:
    """Wait until freshly started node apps stop growing, so two readings moments apart agree."""

    def rss() -> list[int]:
        return [psutil.Process(p["pid"]).memory_info().rss for p in jlist(pm2).values() if p["pid"]]

    previous: list[list[int]] = [[]]

    def same() -> bool:
        time.sleep(0.3)
        now, previous[0] = rss(), rss()
        return now == previous[0] and bool(now)

    wait_until(same, what="the apps' memory to settle")


def named(snapshot: Snapshot, name: str) -> ProcessInfo | None:
    return next((p for p in snapshot.processes if p.name == name), None)


async def test_every_figure_equals_what_pm2_says(pm2: PM2Sandbox, engine_for: EngineFor) -> None:
    pm2.start(pm2.app("api", STEADY), "api")
    pm2.start(pm2.app("web", STEADY), "web", "-i", "2")
    pm2.run("restart", "web")  # a restart_time of 1 for each web instance
    settled(pm2)
    source = PM2Source(home=pm2.home, interval=5, timeout=4)
    engine = engine_for(source)
    try:
        snap = await engine.collect_once()
    finally:
        await engine.stop()
    truth = json.loads(pm2.run("jlist").stdout)
    assert snap.sources["pm2"].ok and snap.sources["pm2"].detail == "rpc.sock"
    assert len(snap.processes) == len(truth) == 3
    for pm2_says in truth:
        env = pm2_says["pm2_env"]
        key = "pm2:api" if env["name"] == "api" else f"pm2:web:{pm2_says['pm_id']}"
        (ours,) = [p for p in snap.processes if p.key == key]
        assert ours.name == env["name"] and ours.manager == "pm2"
        assert ours.status == env["status"] == "online"
        assert ours.pid == pm2_says["pid"]
        assert ours.restarts_total == env["restart_time"]
        assert ours.started_at == env["pm_uptime"] / 1000
        assert ours.log_files == (env["pm_err_log_path"], env["pm_out_log_path"])
        # Memory is PM2's own reading (pidusage's RSS), taken moments before jlist's.
        assert ours.rss_bytes == pytest.approx(pm2_says["monit"]["memory"], rel=0.05)
    assert [p.restarts_total for p in snap.processes if p.name == "web"] == [1, 1]


async def test_a_crash_loop_is_pushed_crash_by_crash_between_polls(pm2: PM2Sandbox, engine_for: EngineFor) -> None:
    pm2.start(pm2.app("steady", STEADY), "steady")
    # A poll interval of an hour: anything seen after the first read arrived through pub.sock.
    source = PM2Source(home=pm2.home, interval=3600, timeout=4)
    engine = engine_for(source)
    published: list[Snapshot] = []
    engine.subscribe(published.append)
    await engine.start()
    try:
        await wait_for(lambda: bool(published) and named(published[-1], "steady") is not None, what="first read")
        await wait_for(lambda: source.detail == "rpc.sock, pub.sock events", what="the event socket")
        await asyncio.to_thread(pm2.start, pm2.app("crasher", CRASHER), "crasher")
        # PM2 gives up after 16 quick crashes in a row ("restart overlimit") and marks the app errored.
        await wait_for(
            lambda: (p := named(published[-1], "crasher")) is not None and p.status == "errored",
            limit=30,
            what="PM2 giving up on the crasher",
        )
    finally:
        await engine.stop()
    counts = [p.restarts_total for s in published if (p := named(s, "crasher")) is not None]
    distinct = sorted(set(c for c in counts if c is not None))
    pm2_says = jlist(pm2)["crasher"]["pm2_env"]["restart_time"]
    assert distinct[-1] == pm2_says
    assert distinct == list(range(distinct[0], pm2_says + 1)), f"a crash went unseen: {distinct}"
    assert len(distinct) >= 10
    statuses = {p.status for s in published if (p := named(s, "crasher")) is not None}
    assert "crash-loop" in statuses
    final = named(published[-1], "crasher")
    assert final is not None and final.restarts_last_hour is not None and final.restarts_last_hour >= 10
    (tail,) = [t for t in published[-1].logs if t.key == "pm2:crasher"]
    assert tail.lines and all(line == "dying: api_key=***" for line in tail.lines), tail.lines
    assert tail.path == str(pm2.home / "logs" / "crasher-error.log")


async def test_the_apps_secrets_appear_nowhere(
    pm2: PM2Sandbox, caplog: pytest.LogCaptureFixture, engine_for: EngineFor
) -> None:
    caplog.set_level(logging.DEBUG)
    script = pm2.app("bot", STEADY)
    pm2.start(
        script, "bot", "--", f"--password={SECRET}", env=pm2.env(BOT_TOKEN=SECRET, DB_PASSWORD=SECRET, status=SECRET)
    )
    assert SECRET in pm2.run("jlist").stdout, "PM2 itself does keep the secrets: the test would prove nothing"
    source = PM2Source(home=pm2.home, interval=3600, timeout=4)
    engine = engine_for(source)
    published: list[Snapshot] = []
    engine.subscribe(published.append)
    await engine.start()
    try:
        await wait_for(lambda: source.detail == "rpc.sock, pub.sock events", what="the event socket")
        client = PM2Client(pm2.home)
        try:
            await client.restart("bot")  # events carrying the environment flow through pub.sock
        finally:
            await client.close()
        await wait_for(lambda: (p := named(published[-1], "bot")) is not None and p.restarts_total == 1)
    finally:
        await engine.stop()
    fallback = PM2Source(
        home=pm2.home, interval=5, timeout=4, command=str(pm2.pm2), rpc_socket=pm2.home / "missing.sock"
    )
    via_jlist = await engine_for(fallback).collect_once()
    assert fallback.detail is not None and fallback.detail.startswith("pm2 jlist (fallback")
    everything = [
        *(repr(s) for s in published),
        *(render_json(s) + render_text(s) for s in (*published, via_jlist)),
        repr(via_jlist),
        caplog.text,
        repr(vars(source)),
        repr(vars(fallback)),
    ]
    for text in everything:
        assert SECRET not in text
    assert named(via_jlist, "bot") is not None and named(via_jlist, "bot").status == "online"  # type: ignore[union-attr]


async def test_daemon_stopped_is_a_clear_error_nothing_starts_one_and_the_list_comes_back(
    pm2: PM2Sandbox, engine_for: EngineFor
) -> None:
    pm2.start(pm2.app("api", STEADY), "api")
    source = PM2Source(home=pm2.home, interval=3600, timeout=4)
    engine = engine_for(source)
    await engine.start()
    try:
        await wait_for(lambda: source.detail == "rpc.sock, pub.sock events")
        await asyncio.to_thread(pm2.run, "kill")
        await engine.run_source(source)
        engine.flush()
        status = engine.snapshot.sources["pm2"]
        assert not status.ok
        assert status.error == (
            f"PM2 is not running: {pm2.home / 'rpc.sock'} does not exist "
            "(PM2 never started for this home, or was stopped)"
        )
        assert pm2.daemon_pid() is None, "opstui must never start a PM2 daemon (pm2 jlist would)"
        # PM2 comes back with another app: the event socket reconnects and re-reads the whole list.
        await asyncio.to_thread(pm2.start, pm2.app("worker", STEADY), "worker")
        await wait_for(lambda: named(engine.snapshot, "worker") is not None, what="the list after the restart")
        assert engine.snapshot.sources["pm2"].ok
        assert named(engine.snapshot, "api") is None
    finally:
        await engine.stop()


async def test_a_daemon_that_died_leaves_a_stale_socket_and_the_last_list_stays(
    pm2: PM2Sandbox, engine_for: EngineFor
) -> None:
    pm2.start(pm2.app("api", STEADY), "api")
    source = PM2Source(home=pm2.home, interval=3600, timeout=4)
    engine = engine_for(source)
    await engine.start()
    try:
        await wait_for(lambda: source.detail == "rpc.sock, pub.sock events")
        pid = pm2.daemon_pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await asyncio.to_thread(wait_until, lambda: not psutil.pid_exists(pid), what="the daemon to die")
        await engine.run_source(source)
        engine.flush()
    finally:
        await engine.stop()
    status = engine.snapshot.sources["pm2"]
    assert status.error == (
        f"PM2 is not running: {pm2.home / 'rpc.sock'} refuses connections (a stale socket left by a daemon that died)"
    )
    assert named(engine.snapshot, "api") is not None, "the last good list stays, marked stale"
    assert engine.snapshot.is_stale(named(engine.snapshot, "api"))


class GarbageServer:
    """A unix socket that answers every connection with bytes that are not PM2's protocol."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            conn.close()

    def close(self) -> None:
        self.sock.close()


async def test_a_socket_speaking_garbage_falls_back_to_pm2_jlist_and_says_so(
    pm2: PM2Sandbox, engine_for: EngineFor
) -> None:
    pm2.start(pm2.app("api", STEADY), "api")
    garbage = GarbageServer(pm2.home / "garbage.sock")
    try:
        source = PM2Source(home=pm2.home, interval=5, timeout=4, command=str(pm2.pm2), rpc_socket=garbage.path)
        snap = await engine_for(source).collect_once()
    finally:
        garbage.close()
    assert snap.sources["pm2"].ok
    assert snap.sources["pm2"].detail == "pm2 jlist (fallback: not PM2's protocol (frame header 0x48))"
    api = named(snap, "api")
    assert api is not None
    truth = jlist(pm2)["api"]
    assert (api.status, api.pid, api.restarts_total) == ("online", truth["pid"], truth["pm2_env"]["restart_time"])
    without = PM2Source(home=pm2.home, interval=5, timeout=4, fallback=False, rpc_socket=pm2.home / "garbage.sock")
    assert not (await engine_for(without).collect_once()).sources["pm2"].ok


def test_jlist_output_is_read_after_the_banner_pm2_prints_on_its_first_run(pm2: PM2Sandbox) -> None:
    first_run = pm2.run("jlist").stdout  # no daemon yet: the CLI prints its banner, starts one, prints "[]"
    assert "PM2" in first_run and not first_run.startswith("[")
    assert read_jlist_output(first_run) == []
    pm2.start(pm2.app("api", STEADY), "api")
    noisy = ">>>> In-memory PM2 is out-of-date, do:\n>>>> $ pm2 update\n" + pm2.run("jlist").stdout + "\n"
    assert [p.name for p in read_jlist_output(noisy)] == ["api"]


async def test_client_restarts_stops_and_starts_by_name_as_the_cli_does(pm2: PM2Sandbox) -> None:
    pm2.start(pm2.app("api", STEADY), "api")
    before = jlist(pm2)["api"]
    client = PM2Client(pm2.home)
    try:
        assert await client.restart("api") == [before["pm_id"]]
        after = jlist(pm2)["api"]
        assert after["pm2_env"]["restart_time"] == before["pm2_env"]["restart_time"] + 1
        assert after["pid"] != before["pid"]
        await client.stop("api")
        assert jlist(pm2)["api"]["pm2_env"]["status"] == "stopped"
        assert [p.status for p in await client.processes()] == ["stopped"]
        assert await client.start("api") == [before["pm_id"]]
        assert jlist(pm2)["api"]["pm2_env"]["status"] == "online"
        assert await client.start("api") == [], "an online process is left alone"
        with pytest.raises(ActionError, match="PM2 has no process named 'nope'"):
            await client.restart("nope")
    finally:
        await client.close()


async def test_config_builds_a_pm2_source_per_home(pm2: PM2Sandbox, write_config, engine_for: EngineFor) -> None:  # type: ignore[no-untyped-def]
    pm2.start(pm2.app("api", STEADY), "api")
    config = load_config(write_config(f'[[pm2]]\nhome = "{pm2.home}"\nerror_log_lines = 5\n'))
    (source,) = [s for s in build_sources(config) if s.kind == "pm2"]
    snap = await engine_for(source).collect_once()
    assert [p.name for p in snap.processes] == ["api"]


def test_the_parser_keeps_only_pm2s_own_fields_whatever_the_chunking() -> None:
    pm2_env = {
        "name": "app",
        "pm_id": 3,
        "status": "online",
        "restart_time": 7,
        "unique_id": "u",
        "pm_uptime": 1715682721000,
        "pm_err_log_path": "/x/app-error.log",
        "args": ["--password", SECRET],
        "versioning": {"url": f"https://{SECRET}@example.invalid/r.git"},
        "API_TOKEN": SECRET,
        "npm_config_cache": SECRET,
        "env": {"API_TOKEN": SECRET, "pm_id": 3, "status": "x", "restart_time": 1},
    }
    reply = [
        {"args": [[{"pid": 10, "name": "app", "pm_id": 3, "monit": {"memory": 5, "cpu": 0.5}, "pm2_env": pm2_env}]]}
    ]
    stream = encode_message([*reply, "opstui:1"]) * 2
    for step in (1, 3, 7, 4096, len(stream)):
        parser = AmpParser()
        frames = [f for i in range(0, len(stream), step) for f in parser.feed(stream[i : i + step])]
        assert len(frames) == 2
        decoded = decode_json(frames[0][0])
        assert SECRET not in repr(decoded) and "API_TOKEN" not in repr(decoded)
        (entry,) = decoded["args"][0]
        assert entry["pm2_env"]["restart_time"] == 7 and entry["monit"] == {"memory": 5, "cpu": 0.5}


async def test_the_client_refuses_calls_that_would_crash_the_daemon(tmp_path: Path) -> None:
    # Anything but exactly one argument to a known method makes PM2's daemon throw and restart every app.
    rpc = RpcConnection(tmp_path / "rpc.sock")
    with pytest.raises(ValueError, match="does not call PM2's getReport"):
        await rpc.call("getReport", {})
    with pytest.raises(ValueError, match="exactly one"):
        await rpc.call("ping", None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="1 to 15"):
        encode_message([])
