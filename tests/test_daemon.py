"""`opstui daemon` as a process: systemd's notify protocol, JSON logs without secrets, a stop within 5 seconds
whatever is under way, and SIGHUP reloads that refuse a bad config."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

from daemon_helpers import DaemonProcess, fetch, running, until, wait
from opstui.actions.audit import AuditLog
from opstui.config import load_config
from opstui.daemon import runner
from opstui.state import StateStore
from telegram_api import ALERTS_CHAT, TOKEN, FakeBotAPI

ENV_ALERT = "OPSTUI_TEST_VARIABLE_NOBODY_SETS"


def receive(sock: socket.socket, wanted: str, timeout: float = 20.0) -> list[str]:
    """Datagrams until one holds the line `wanted`; each datagram as its lines."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            fields = sock.recv(4096).decode().split("\n")
        except TimeoutError:
            break
        if wanted in fields:
            return fields
    raise AssertionError(f"systemd was never told {wanted}")


def test_systemd_hears_ready_watchdog_reloading_and_stopping_and_the_log_is_json_without_secrets(
    tmp_path: Path, write_config
) -> None:  # type: ignore[no-untyped-def]
    notify = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify))
    closed_port = _closed_port()
    secret_ping = f"ping-{uuid.uuid4()}"
    config = write_config(
        f"""
[host]
interval = "1s"
[[env]]
name = "bot"
required = ["{ENV_ALERT}"]
interval = "0.5s"
[alerts]
group_window = "0s"
[telegram]
token = "{TOKEN}"
chat_id = {ALERTS_CHAT}
api_base = "http://127.0.0.1:{closed_port}"
timeout = "1s"
[daemon]
listen = ""
heartbeat_url = "http://127.0.0.1:{closed_port}/{secret_ping}"
heartbeat_every = "0.5s"
"""
    )
    daemon = DaemonProcess.opstui(config, env={"NOTIFY_SOCKET": str(notify), "WATCHDOG_USEC": "1000000"})
    try:
        ready = receive(sock, "READY=1")
        assert f"MAINPID={daemon.pid}" in ready
        assert any(field.startswith("STATUS=leading (a single daemon)") for field in ready)
        receive(sock, "WATCHDOG=1", timeout=3)
        receive(sock, "WATCHDOG=1", timeout=3)
        daemon.wait_for(lambda line: "cannot reach 127.0.0.1" in line, what="a failed send")
        daemon.wait_for(lambda line: "cannot ping the heartbeat" in line, what="a failed heartbeat")
        daemon.send(signal.SIGHUP)
        receive(sock, "RELOADING=1")
        receive(sock, "READY=1")
        daemon.send(signal.SIGTERM)
        receive(sock, "STOPPING=1")
        assert daemon.stop() == 0
    finally:
        daemon.kill()
        sock.close()
    events = daemon.events()
    assert len(events) == len(daemon.lines), "every line on stdout is one JSON object"
    assert {"ts", "level", "logger", "msg"} <= set(events[0])
    assert [e["msg"] for e in events if e["msg"] in ("daemon started", "config reloaded", "daemon stopped")] == [
        "daemon started",
        "config reloaded",
        "daemon stopped",
    ]
    output = "\n".join(daemon.lines)
    assert TOKEN not in output and TOKEN.split(":")[1] not in output
    assert secret_ping not in output


STUCK_ACTION = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('started', flush=True); time.sleep(3600)"
)
LAUNCHER = """
import asyncio, sys
from opstui.actions import Actor
from opstui.config import load_config
from opstui.daemon.runner import Daemon, run_until_stopped
from opstui.logs import setup_logging

async def main() -> int:
    daemon = Daemon(load_config(sys.argv[1]))
    running = asyncio.ensure_future(daemon.run())
    while not daemon.started:
        await asyncio.sleep(0.05)
    plan = await daemon.actions.plan("stuck", actor=Actor.local("test"))
    run = await daemon.actions.start(plan)
    async for line in run.follow():
        if line.text == "started":
            print("ACTION RUNNING", flush=True)
            break
    return await running

setup_logging(fmt="json", stream=sys.stdout)
sys.exit(run_until_stopped(main()))
"""


def test_sigterm_stops_within_5s_with_a_hung_source_a_send_in_flight_and_an_action_running(
    tmp_path: Path, write_config, telegram_api: FakeBotAPI
) -> None:  # type: ignore[no-untyped-def]
    fifo = tmp_path / "app.env"
    os.mkfifo(fifo)  # opening it blocks until someone writes: a read stuck in a system call, as on a hung NFS
    marker = f"opstui-test-{uuid.uuid4()}"
    config = write_config(
        f"""
[general]
instance = "demo"
state_dir = "{tmp_path / "state"}"
[host]
enabled = false
[[env]]
name = "hung"
required = ["X"]
file = "{fifo}"
interval = "0.5s"
timeout = "0.3s"
[[env]]
name = "bot"
required = ["{ENV_ALERT}"]
interval = "0.5s"
[alerts]
group_window = "0s"
[telegram]
token = "{TOKEN}"
chat_id = {ALERTS_CHAT}
api_base = "{telegram_api.url}"
timeout = "20s"
[[actions.command]]
name = "stuck"
command = ["{sys.executable}", "-c", "{STUCK_ACTION}", "{marker}"]
confirm = false
timeout = "10m"
[daemon]
listen = ""
"""
    )
    telegram_api.fail("sendMessage", hang=30)
    daemon = DaemonProcess.script(LAUNCHER, str(config))
    try:
        daemon.wait_for(lambda line: line == "ACTION RUNNING", what="the action to run")
        until(lambda: any(call.description == "hung" for call in telegram_api.calls), 20, "a send in flight")
        time.sleep(1)  # several ticks of the hung source have started threads that will never end
        began = time.monotonic()
        daemon.send(signal.SIGTERM)
        assert daemon.proc.wait(5.0) == 0, daemon.output()
        took = time.monotonic() - began
    finally:
        daemon.kill()
    assert took < 5.0
    assert not [p for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or [])]
    # The hung read was still stuck in its thread when the daemon exited 0 above.
    assert any("still busy with the previous read" in line for line in daemon.lines), daemon.output()

    store = StateStore.in_dir(tmp_path / "state")
    try:
        run = AuditLog(store).recent(1)[-1]
        assert (run.action, run.result, run.reason) == ("stuck", "cancelled", "the daemon is stopping")
        waiting = [r["idem_key"] for r in store.query("SELECT idem_key FROM outbox WHERE status = 'pending'")]
        assert any(key.startswith("env:env:bot@") for key in waiting), waiting
        assert store.query("SELECT count(*) FROM alert_state")[0][0] >= 1
    finally:
        store.close()
    assert telegram_api.messages == []

    # The next start sends what was in flight, once, and nothing about the same incidents a second time.
    daemon = DaemonProcess.opstui(config)
    try:
        telegram_api.wait_for_messages(len(waiting), timeout=30)
        time.sleep(2)
    finally:
        assert daemon.stop() == 0
    firing = [line for m in telegram_api.messages for line in m.text.splitlines() if line.startswith("🔴")]
    assert sum(ENV_ALERT in line for line in firing) == 1, firing
    assert len(telegram_api.messages) == len(waiting)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- in one process: the endpoint, the metrics, a reload -------------------------------------------------------


async def test_sighup_applies_a_good_config_and_a_bad_one_is_refused_while_the_old_one_runs(
    tmp_path: Path, write_config, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    path = write_config('[host]\ninterval = "0.5s"\n[daemon]\nlisten = "127.0.0.1:0"\n')
    app_log = tmp_path / "app.log"
    app_log.write_text("")
    async with running(load_config(path)) as daemon:
        path.write_text(path.read_text() + f'[[logs]]\nname = "app"\npath = "{app_log}"\ninterval = "0.5s"\n')
        os.kill(os.getpid(), signal.SIGHUP)
        await wait(lambda: daemon.reloads == 1, 10, "the reload")
        assert [s.name for s in daemon.engine.sources] == ["host", "log app"]  # type: ignore[union-attr]
        await wait(lambda: daemon.engine.snapshot.sources["log app"].ok, 10, "the new source")  # type: ignore[union-attr]
        assert 'opstui_source_up{source="log app",kind="logs"} 1' in (await fetch(daemon, "/metrics"))[1]

        path.write_text(path.read_text().replace('interval = "0.5s"', 'interval = "soon"', 1))
        os.kill(os.getpid(), signal.SIGHUP)
        await wait(lambda: daemon.reload_failures == 1, 10, "the refusal")
        refused = [r for r in caplog.records if "config reload refused" in r.getMessage()]
        assert len(refused) == 1 and f"{path}:5: host.interval: 'soon' is not a duration" in refused[0].getMessage()
        ticks = daemon.ticks
        await asyncio.sleep(1.5)
        assert daemon.ticks > ticks and [s.name for s in daemon.engine.sources] == ["host", "log app"]  # type: ignore[union-attr]
        assert (await fetch(daemon, "/healthz"))[0] == 200
        assert "opstui_config_reload_failures_total 1" in (await fetch(daemon, "/metrics"))[1]


async def test_healthz_says_when_the_scheduler_stalls_and_readyz_when_it_works(
    write_config, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(runner, "TICK_STALE", 1.0)
    config = load_config(write_config('[host]\ninterval = "0.5s"\n[daemon]\nlisten = "127.0.0.1:0"\n'))
    async with running(config) as daemon:
        await wait(lambda: daemon.ticks >= 1, 5, "a tick")
        status, body = await fetch(daemon, "/healthz")
        assert status == 200 and json.loads(body)["status"] == "ok"
        status, body = await fetch(daemon, "/readyz")
        assert (status, json.loads(body)) == (200, {"ready": True, "role": "leading (a single daemon)"})

        daemon.engine.scheduler.pause()  # type: ignore[union-attr]
        await asyncio.sleep(1.5)
        status, body = await fetch(daemon, "/healthz")
        assert status == 503 and json.loads(body)["status"] == "stalled"
        status, body = await fetch(daemon, "/readyz")
        assert status == 503 and json.loads(body)["problems"][0].startswith("the scheduler has not ticked for")

        daemon.engine.scheduler.resume()  # type: ignore[union-attr]
        await wait(lambda: (daemon.tick_age() or 9) < 0.5, 5, "ticking again")
        assert (await fetch(daemon, "/healthz"))[0] == 200


async def test_the_endpoint_answers_only_what_it_serves_and_a_silent_client_holds_nothing_up() -> None:
    from opstui.daemon.http import Answer, MonitorServer

    server = MonitorServer({"/healthz": lambda: Answer.json(200, {"status": "ok"})})
    host, port = (await server.start("127.0.0.1", 0)).rsplit(":", 1)

    async def ask(raw: bytes) -> bytes:
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(raw)
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        return answer

    silent = await asyncio.open_connection(host, int(port))  # connects and never says anything
    try:
        assert (await ask(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")).startswith(b"HTTP/1.1 200 OK")
        assert (await ask(b"HEAD /healthz HTTP/1.1\r\n\r\n")).endswith(b"\r\n\r\n")
        assert (await ask(b"GET /admin HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 404")
        assert (await ask(b"POST /healthz HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 405")
        assert (await ask(b"\x16\x03\x01 garbage\r\n\r\n")).startswith(b"HTTP/1.1 400")
    finally:
        silent[1].close()
        await server.close()


def test_metrics_export_every_declared_figure_grouped_as_prometheus_requires() -> None:
    from alerting_helpers import START, dispatch, health, host, lock, process, queue, snapshot
    from opstui.daemon.metrics import DaemonFacts, render
    from opstui.model import METRICS, ActivityInfo, AlertInfo, CheckInfo, Level, LockState, MemoryInfo, RedisMemory
    from opstui.notify.telegram import Failure

    snap = snapshot(
        START,
        processes=(process("api", restarts=3, rss_bytes=50_000_000, cpu_percent=1.5, restarts_last_hour=2),),
        queues=(queue('in"coming', 162, growth_per_min=12.5),),
        health=(
            dataclasses.replace(health("api", ok=True), latency_ms=12.5),
            dataclasses.replace(health("whatsapp", ok=False), status_code=503),
        ),
        locks=(
            dataclasses.replace(lock("daily batch", LockState.HELD), expires_at=START + 300),
            lock("nightly", LockState.STALE),
            lock("broken", LockState.UNKNOWN),
        ),
        activity=(ActivityInfo(key="redis main/handled", name="handled", source="redis main", last_at=START - 15),),
        dispatch=(dispatch(10, 7, 1, last_event_at=START),),
        checks=(CheckInfo(key="env:bot", name="bot", kind="env", level=Level.OK, source="files"),),
    ).replace(
        memory=MemoryInfo(
            host=dataclasses.replace(host(42.0), load_1m=0.5),
            redis=(RedisMemory(name="main", used_bytes=1024, source="redis main"),),
        ),
        alerts=(AlertInfo(key="k", rule="queue_depth", level=Level.CRITICAL, state="firing", summary="s"),),
    )
    facts = DaemonFacts(
        instance="demo",
        started_at=START,
        last_tick_age=0.2,
        ticks=5,
        leader=True,
        fencing_token=7,
        outbox_pending=2,
        outbox_oldest_age=30.0,
        telegram={"sent": 4, "rate_limited": 1},
    )
    text = render(snap, facts)
    sample = re.compile(r'^opstui_[a-z0-9_]+(\{([a-z_]+="([^"\\]|\\.)*",?)+\})? [-+0-9.eEInfNa]+$')
    families: list[str] = []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            families.append(line.split()[2])
        elif not line.startswith("# HELP "):
            assert sample.match(line), line
            assert line.split("{")[0].split(" ")[0] == families[-1], f"{line} is not with its family"
    assert len(families) == len(set(families))
    exported = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if not line.startswith("#")}
    for kind, metrics in METRICS.items():
        for metric in metrics:
            if kind is CheckInfo:
                continue  # a check without a figure (value None) has nothing to export
            assert f"opstui_{metric.name}" in exported, metric.name
    assert 'opstui_queue_depth{key="redis main/in\\"coming",source="redis main",name="in\\"coming"} 162' in text
    assert 'opstui_alerts{state="firing",level="critical"} 1' in text
    assert "opstui_leader 1" in text and "opstui_fencing_token 7" in text and "opstui_outbox_pending 2" in text
    assert 'opstui_telegram_errors_total{kind="rate_limited"} 1' in text
    # Every kind of Telegram failure is there from the start, so increase() sees the first one.
    assert 'opstui_telegram_errors_total{kind="unauthorized"} 0' in text
    assert len(re.findall(r"^opstui_telegram_errors_total\{", text, re.M)) == len(Failure)
    # The figures a Grafana user alerts on: an endpoint down, a lock held, work that stopped, restarts.
    lines = set(text.splitlines())
    assert 'opstui_health_up{key="http:api",source="http",name="api"} 1.0' in lines
    assert 'opstui_health_up{key="http:whatsapp",source="http",name="whatsapp"} 0.0' in lines
    batch = 'key="postgres main/daily batch",source="postgres main",name="daily batch"'
    assert f"opstui_lock_held{{{batch}}} 1.0" in lines
    assert 'opstui_lock_held{key="postgres main/nightly",source="postgres main",name="nightly"} 0.0' in lines
    assert 'name="broken"' not in text  # a lock that could not be read is neither held nor free
    assert f"opstui_lock_expires_timestamp_seconds{{{batch}}} {START + 300!r}" in lines
    handled = 'key="redis main/handled",source="redis main",name="handled"'
    assert f"opstui_activity_last_timestamp_seconds{{{handled}}} {START - 15!r}" in lines
    assert 'opstui_process_restarts_last_hour{key="pm2:api",source="pm2",name="api"} 2.0' in lines
    incoming = 'key="redis main/in\\"coming",source="redis main",name="in\\"coming"'
    assert f"opstui_queue_growth_per_minute{{{incoming}}} 12.5" in lines


def test_a_running_daemon_that_sends_and_pings_never_loads_textual_or_rich(tmp_path: Path, write_config) -> None:  # type: ignore[no-untyped-def]
    port = _closed_port()
    config = write_config(
        f"""
[host]
interval = "0.5s"
[[env]]
name = "bot"
required = ["{ENV_ALERT}"]
interval = "0.5s"
[alerts]
group_window = "0s"
[telegram]
token = "{TOKEN}"
chat_id = {ALERTS_CHAT}
api_base = "http://127.0.0.1:{port}"
[daemon]
listen = "127.0.0.1:0"
heartbeat_url = "http://127.0.0.1:{port}/ping"
heartbeat_every = "0.3s"
"""
    )
    code = (
        "import asyncio, sys\n"
        "from opstui.config import load_config\n"
        "from opstui.daemon import run_daemon\n"
        "async def main():\n"
        "    stop = asyncio.Event()\n"
        "    asyncio.get_running_loop().call_later(2.5, stop.set)\n"
        "    return await run_daemon(load_config(sys.argv[1]), stop=stop)\n"
        "status = asyncio.run(main())\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich'))\n"
        "print('LOADED:' + ','.join(bad), 'httpx' in sys.modules, status)\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(config)], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip().splitlines()[-1] == "LOADED: True 0", result.stdout + result.stderr


def test_a_daemon_that_cannot_start_says_why_in_one_line_and_exits_2(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    config = tmp_path / "opstui.toml"
    config.write_text(f'[general]\nstate_dir = "{tmp_path / "a-file" / "state"}"\n[daemon]\nlisten = ""\n')
    result = subprocess.run(
        [sys.executable, "-m", "opstui", "-c", str(config), "daemon"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    errors = [json.loads(line) for line in result.stdout.splitlines() if '"error"' in line]
    assert [e["msg"].split(":")[0] for e in errors] == ["the daemon cannot start"]
    assert "cannot open the state database" in errors[0]["msg"]
    assert "Traceback" not in result.stdout + result.stderr
