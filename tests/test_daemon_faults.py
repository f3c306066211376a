"""Faults the daemon meets in production, each one made for real: Redis and PostgreSQL killed and restarted, PM2's
daemon stopped, the dispatch log rotated and truncated, garbage from a health endpoint, Telegram failing for
minutes, the state database read-only or locked. In every case the daemon keeps running, says which part
fails, alerts about it once, recovers by itself, and loses or repeats no notification."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from alerting_helpers import Clock, Harness, process
from daemon_helpers import fetch, running, wait
from opstui.config import load_config
from opstui.daemon import Daemon
from opstui.demo.servers import EmbeddedPostgres, EmbeddedRedis
from opstui.model import Level
from pm2_sandbox import PM2Sandbox
from telegram_api import ALERTS_CHAT, NGINX_502, TOKEN, FakeBotAPI


def base(api: FakeBotAPI) -> str:
    return f"""
[host]
enabled = false
[alerts]
group_window = "0s"
[telegram]
token = "{TOKEN}"
chat_id = {ALERTS_CHAT}
api_base = "{api.url}"
timeout = "2s"
[report]
enabled = false
[daemon]
listen = "127.0.0.1:0"
"""


def headlines(api: FakeBotAPI) -> list[str]:
    return [m.text.splitlines()[0] for m in api.messages]


async def settle(daemon: Daemon, api: FakeBotAPI, count: int, what: str) -> None:
    """Wait for `count` messages in all, then a little longer to show that no more come."""
    await wait(lambda: len(api.messages) >= count, 30, what)
    await asyncio.sleep(1.0)
    assert len(api.messages) == count, headlines(api)


def nothing_lost_or_repeated(daemon: Daemon, api: FakeBotAPI) -> None:
    assert daemon.store is not None
    rows = daemon.store.query("SELECT status, count(*) AS n FROM outbox GROUP BY status")
    assert {r["status"]: r["n"] for r in rows} == {"sent": len(api.messages)}


async def down_then_back(
    daemon: Daemon, api: FakeBotAPI, source: str, *, break_it: Callable[[], None], fix_it: Callable[[], None]
) -> str:
    """Break a source's system; one alert; fix it; one resolution. Returns the error the source reported."""
    await wait(lambda: daemon.engine.snapshot.sources[source].ok, 20, f"{source} to be read")  # type: ignore[union-attr]
    break_it()
    await settle(daemon, api, 1, "the alert")
    status = daemon.engine.snapshot.sources[source]  # type: ignore[union-attr]
    assert not status.ok and status.error and status.last_ok_at is not None
    text = (await fetch(daemon, "/metrics"))[1]
    assert f'opstui_source_up{{source="{source}",kind="{status.kind}"}} 0' in text
    assert (await fetch(daemon, "/healthz"))[0] == 200  # the daemon itself is fine
    await asyncio.to_thread(fix_it)
    await settle(daemon, api, 2, "the resolution")
    assert daemon.engine.snapshot.sources[source].ok  # type: ignore[union-attr]
    assert headlines(api) == [f"🔴 {source} cannot be read: {headlines(api)[0].split(': ', 1)[1]}",
                              f"✅ Resolved: {headlines(api)[0][2:]}"]  # fmt: skip
    nothing_lost_or_repeated(daemon, api)
    return status.error


async def test_redis_killed_and_restarted(tmp_path: Path, write_config, telegram_api: FakeBotAPI) -> None:  # type: ignore[no-untyped-def]
    redis = EmbeddedRedis(tmp_path / "redis").start()
    config = write_config(
        base(telegram_api)
        + f'[[redis]]\nname = "main"\nurl = "{redis.url}"\ninterval = "0.3s"\ntimeout = "0.5s"\n'
        + '[[redis.queues]]\nname = "incoming"\nkey = "queue:incoming"\n'
    )
    again = EmbeddedRedis(tmp_path / "redis", port=redis.port)
    try:
        async with running(load_config(config)) as daemon:
            error = await down_then_back(daemon, telegram_api, "redis main", break_it=redis.kill, fix_it=again.start)
    finally:
        again.stop()
        redis.stop()
    assert "refused" in error


@pytest.fixture
def own_postgres(server_root: Path) -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL of this test's own, to kill and restart (the session's stays up for the other tests)."""
    server = EmbeddedPostgres(server_root / f"pg-{time.monotonic_ns()}").start()
    try:
        yield server
    finally:
        server.stop()
        server.remove()


def restart(server: EmbeddedPostgres) -> None:
    # After a SIGKILL the old backends take a moment to notice and leave their shared memory behind.
    deadline = time.monotonic() + 20
    while True:
        try:
            server.start()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


async def test_postgresql_killed_and_restarted(write_config, telegram_api: FakeBotAPI, own_postgres) -> None:  # type: ignore[no-untyped-def]
    config = write_config(
        base(telegram_api)
        + f'[[postgres]]\nname = "main"\ndsn = "{own_postgres.dsn}"\ninterval = "0.3s"\ntimeout = "1s"\n'
        + '[[postgres.activity]]\nname = "queries"\nquery = "SELECT now()"\n'
    )
    async with running(load_config(config)) as daemon:
        await down_then_back(
            daemon, telegram_api, "postgres main", break_it=own_postgres.kill, fix_it=lambda: restart(own_postgres)
        )


async def test_the_shared_database_of_daemons_killed_and_restarted(
    tmp_path: Path, write_config, telegram_api: FakeBotAPI, own_postgres
) -> None:  # type: ignore[no-untyped-def]
    """HA's own PostgreSQL goes: the leader loses its lease and delivery waits; when it is back, what happened
    meanwhile goes out, once."""
    env = tmp_path / "app.env"
    env.write_text("BOT_TOKEN=set\n")
    config = write_config(
        base(telegram_api)
        + f'[[env]]\nname = "bot"\nrequired = ["BOT_TOKEN"]\nfile = "{env}"\ninterval = "0.3s"\n'
        + f'[daemon.ha]\ndsn = "{own_postgres.dsn}"\nlease = "2s"\ntimeout = "1s"\n'
    )
    async with running(load_config(config)) as daemon:
        await wait(lambda: daemon.leadership.leading, 20, "the lead")
        own_postgres.kill()
        await wait(lambda: not daemon.leadership.leading, 10, "the lease to run out")
        env.write_text("BOT_TOKEN=\n")  # the bot loses its token while nothing can be queued
        await wait(lambda: any(a.rule == "env" for a in daemon.engine.snapshot.alerts), 10, "the alert shown")  # type: ignore[union-attr]
        status, body = await fetch(daemon, "/readyz")
        assert status == 503 and "cannot reach the shared state database" in body
        assert telegram_api.messages == []
        await asyncio.to_thread(restart, own_postgres)
        await wait(lambda: daemon.leadership.leading, 30, "the lead again")
        await settle(daemon, telegram_api, 1, "the alert sent")
        assert headlines(telegram_api) == [f"🔴 bot: not set in {env}: BOT_TOKEN"]
        nothing_lost_or_repeated(daemon, telegram_api)


async def test_the_pm2_daemon_stopped_and_started_again(
    write_config, telegram_api: FakeBotAPI, pm2: PM2Sandbox
) -> None:  # type: ignore[no-untyped-def]
    app = pm2.app("api", "setInterval(() => {}, 1000)\n")
    pm2.start(app, "api")
    config = write_config(
        base(telegram_api)
        + f'[[pm2]]\nname = "pm2"\nhome = "{pm2.home}"\ninterval = "0.3s"\nfallback = false\nevents = false\n'
    )
    async with running(load_config(config)) as daemon:
        await down_then_back(
            daemon,
            telegram_api,
            "pm2",
            break_it=lambda: pm2.run("kill"),
            fix_it=lambda: pm2.start(app, "api"),
        )
        assert [p.status for p in daemon.engine.snapshot.processes] == ["online"]  # type: ignore[union-attr]


def run_lines(name: str, processed: int, sent: int) -> str:
    lines = [{"where": "dailyReport", "phase": "start", "run": name}]
    lines += [{"where": "processUser", "status": "completed"}] * processed
    lines += [{"where": "sendToMonitoringBot", "phase": "after_send", "success": True}] * sent
    return "".join(json.dumps(line) + "\n" for line in lines)


async def test_the_dispatch_log_rotated_and_truncated(tmp_path: Path, write_config, telegram_api: FakeBotAPI) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "dispatch.log"
    log.write_text(run_lines("monday", 5, 5))
    config = write_config(
        base(telegram_api)
        + f'[[dispatch]]\nname = "report"\npath = "{log}"\ninterval = "0.2s"\n[alerts.dispatch]\nsettle = "0s"\n'
    )

    def counts(daemon: Daemon) -> tuple[int, int, int]:
        run = daemon.engine.snapshot.dispatch[0]  # type: ignore[union-attr]
        return run.processed, run.sent, run.failed

    async with running(load_config(config)) as daemon:
        await wait(lambda: bool(daemon.engine.snapshot.dispatch) and counts(daemon) == (5, 5, 0), 10, "monday")  # type: ignore[union-attr]
        log.rename(tmp_path / "dispatch.log.1")  # logrotate's default: move it aside, start a new one
        log.write_text(run_lines("tuesday", 7, 7))
        await wait(lambda: counts(daemon) == (7, 7, 0), 10, "tuesday, after the rotation")
        with log.open("w") as truncated:  # copytruncate: the same file, emptied, then written again
            truncated.write(run_lines("wednesday", 3, 2))
        await wait(lambda: counts(daemon) == (3, 2, 0), 10, "wednesday, after the truncation")
        await settle(daemon, telegram_api, 1, "the mismatch alert")
        with log.open("a") as more:
            more.write(run_lines("thursday", 4, 4))
        await settle(daemon, telegram_api, 2, "its resolution")
        assert daemon.engine.snapshot.sources["dispatch report"].ok  # type: ignore[union-attr]
    assert headlines(telegram_api)[0].startswith("🔴 report: processed 3, sent 2")
    assert headlines(telegram_api)[1].startswith("✅ Resolved: report: processed 3, sent 2")


GARBAGE: list[tuple[str, bytes, str]] = [
    ("not json", b"<html>oops</html>", "application/json"),
    ("binary", bytes(range(256)) * 40, "application/octet-stream"),
    ("truncated json", b'{"status": "ok", "checks": {"db": {"stat', "application/json"),
    ("a huge body", b'{"status": "' + b"x" * 3_000_000 + b'"}', "application/json"),
]


class HealthServer:
    """A /health that answers well, or with the garbage it is told to, or hangs up mid-answer."""

    def __init__(self) -> None:
        self.answer: tuple[bytes, str] | None = (b'{"status": "ok"}', "application/json")
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if server.answer is None:  # promise a body, send half, hang up
                    self.send_response(200)
                    self.send_header("Content-Length", "1000")
                    self.end_headers()
                    self.wfile.write(b'{"status": "o')
                    return
                body, kind = server.answer
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        threading.Thread(target=self.http.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/health"

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


async def test_garbage_from_a_health_endpoint(write_config, telegram_api: FakeBotAPI) -> None:  # type: ignore[no-untyped-def]
    server = HealthServer()
    config = write_config(
        base(telegram_api) + f'[[health]]\nname = "api"\nurl = "{server.url}"\ninterval = "0.2s"\ntimeout = "1s"\n'
    )
    try:
        async with running(load_config(config)) as daemon:
            await wait(lambda: bool(daemon.engine.snapshot.health) and daemon.engine.snapshot.health[0].ok, 10, "ok")  # type: ignore[union-attr]
            seen: list[str] = []
            for what, body, kind in [*GARBAGE, ("hung up mid-answer", b"", "")]:
                server.answer = (body, kind) if body else None
                await wait(lambda: not daemon.engine.snapshot.health[0].ok, 10, what)  # type: ignore[union-attr]
                seen.append(daemon.engine.snapshot.health[0].error or "")  # type: ignore[union-attr]
                await asyncio.sleep(0.5)
            await settle(daemon, telegram_api, 1, "the alert")  # one alert for the whole bad spell
            server.answer = (b'{"status": "ok"}', "application/json")
            await settle(daemon, telegram_api, 2, "the resolution")
            assert (await fetch(daemon, "/healthz"))[0] == 200
            nothing_lost_or_repeated(daemon, telegram_api)
    finally:
        server.close()
    assert all(seen), seen  # each kind of garbage is named, none crashed the source
    first, resolved = headlines(telegram_api)
    assert first == "🔴 health api failing: answered 200 with an HTML page, not JSON"
    assert resolved.startswith("✅ Resolved: health api failing: ")  # as it last failed: hanging up mid-answer


# --- Telegram failing for minutes, on a test clock ----------------------------------------------------------------

OUTAGES: dict[str, dict[str, Any]] = {
    "500": {"status": 500, "description": "Internal Server Error"},
    "502 from nginx": {"status": 502, "html_body": NGINX_502},
    "429": {"status": 429, "description": "Too Many Requests: retry after 30", "parameters": {"retry_after": 30}},
    "hanging": {"hang": 1.0},
    "dropping connections": {"drop": True},
}


@pytest.mark.parametrize("outage", OUTAGES)
async def test_telegram_failing_for_ten_minutes(tmp_path: Path, outage: str) -> None:
    clock = Clock()
    with FakeBotAPI(clock=clock) as api:
        daemon = Harness.new(tmp_path / "state", api, clock, telegram={"timeout": "0.2s"})
        api.outage(**OUTAGES[outage])
        delivery: list[str] = []
        try:
            for step in range(40):  # 20 minutes, read every 30 s; Telegram fails for the first 10
                if step == 20:
                    api.outage()
                workers = (
                    process("worker", "stopped" if 1 <= step < 12 else "online"),
                    process("api", "stopped" if step >= 6 else "online"),
                )
                snapshot = daemon.feed(processes=workers)
                delivery.append(next((a.state for a in snapshot.alerts if a.rule == "delivery"), "ok"))
                await daemon.deliver(within=30)
        finally:
            await daemon.close()
        sent = [m.text.splitlines()[0] for m in api.messages]
    assert sent == ["🔴 worker is stopped", "🔴 api is stopped", "✅ Resolved: worker is stopped"]
    # Telegram's trouble is one alert (shown and counted by `opstui check`, never sent through Telegram).
    episodes = [s for i, s in enumerate(delivery) if s == "firing" and (i == 0 or delivery[i - 1] != "firing")]
    assert len(episodes) == 1, delivery
    assert delivery[-1] != "firing"


# --- the state database ---------------------------------------------------------------------------------------


class Pings:
    """A heartbeat receiver (a stand-in for Healthchecks): what was pinged, and with what body."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []
        pings = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                pings.seen.append((self.command, self.path, body))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"OK")

            do_GET = do_POST = _record

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        threading.Thread(target=self.http.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/ping/4f1c2d"

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


async def test_the_heartbeat_says_down_in_the_shape_the_service_understands() -> None:
    from urllib.parse import parse_qsl, urlsplit

    from opstui.daemon.heartbeat import Heartbeat

    pings = Pings()
    base = pings.url.removesuffix("/ping/4f1c2d")
    problems = ["cannot write the state database: read-only", "Telegram unreachable for 5 minutes"]
    kuma = Heartbeat(f"{base}/api/push/T0k3n?status=up&msg=OK&ping=", every=60, problems=lambda: problems)
    healthchecks = Heartbeat(pings.url, every=60, problems=lambda: problems)
    try:
        assert await kuma.ping() and await healthchecks.ping()
        await kuma.stop()
        await healthchecks.stop()
    finally:
        pings.close()
    (kuma_method, kuma_path, _), (hc_method, hc_path, hc_body) = pings.seen
    # Uptime Kuma has no /fail: the same push URL, reporting down with the first reason.
    assert kuma_method == "GET" and urlsplit(kuma_path).path == "/api/push/T0k3n"
    assert parse_qsl(urlsplit(kuma_path).query, keep_blank_values=True) == [
        ("status", "down"),
        ("msg", "cannot write the state database: read-only"),
        ("ping", ""),
    ]
    # Healthchecks (and Cronitor): POST <url>/fail, every reason in the body.
    assert (hc_method, hc_path) == ("POST", "/ping/4f1c2d/fail")
    assert hc_body.splitlines() == problems


@pytest.mark.parametrize("fault", ["read-only", "locked"])
async def test_the_state_database_read_only_or_locked(
    tmp_path: Path, write_config, telegram_api: FakeBotAPI, fault: str
) -> None:  # type: ignore[no-untyped-def]
    env = tmp_path / "app.env"
    env.write_text("BOT_TOKEN=set\n")
    pings = Pings()
    heartbeat = f'heartbeat_url = "{pings.url}"\nheartbeat_every = "0.3s"\n'
    config = write_config(
        base(telegram_api).replace("[daemon]\n", "[daemon]\n" + heartbeat)
        + f'[[env]]\nname = "bot"\nrequired = ["BOT_TOKEN"]\nfile = "{env}"\ninterval = "0.3s"\n'
    )
    locker: sqlite3.Connection | None = None
    try:
        async with running(load_config(config)) as daemon:
            assert daemon.local is not None
            await wait(lambda: any(p[0] == "GET" for p in pings.seen), 10, "a good ping")

            # The database refuses writes; meanwhile the bot loses its token.
            if fault == "read-only":
                daemon.local._db.execute("PRAGMA query_only = 1")
            else:
                locker = sqlite3.connect(daemon.local.path, isolation_level=None)
                locker.execute("BEGIN IMMEDIATE")  # another process holding the write lock
            env.write_text("BOT_TOKEN=\n")
            await wait(lambda: any(p[0] == "POST" for p in pings.seen), 20, "a /fail ping")
            _, path, body = next(p for p in pings.seen if p[0] == "POST")
            assert path.endswith("/fail") and "cannot write the state database" in body
            await wait(lambda: len(daemon.engine.snapshot.alerts) == 2, 10, "the alerts")  # type: ignore[union-attr]
            alerts = {a.rule: a for a in daemon.engine.snapshot.alerts}  # type: ignore[union-attr]
            assert alerts["state"].state == "firing" and alerts["state"].level is Level.CRITICAL
            assert alerts["env"].state == "firing"  # judged and shown, though it cannot be queued yet
            assert (await fetch(daemon, "/readyz"))[0] == 503
            assert "opstui_state_store_up 0" in (await fetch(daemon, "/metrics"))[1]
            assert (await fetch(daemon, "/healthz"))[0] == 200
            assert telegram_api.messages == []

            # It can write again: the alert goes out once, and the heartbeat is good again.
            if locker is not None:
                locker.execute("ROLLBACK")
            else:
                daemon.local._db.execute("PRAGMA query_only = 0")
            await settle(daemon, telegram_api, 1, "the alert sent")
            pinged = len(pings.seen)
            await wait(lambda: any(p[0] == "GET" for p in pings.seen[pinged:]), 10, "a good ping again")
            await wait(
                lambda: "state" not in {a.rule for a in daemon.engine.snapshot.alerts if a.state == "firing"}, 10, "ok"
            )  # type: ignore[union-attr]
            assert (await fetch(daemon, "/readyz"))[0] == 200
            nothing_lost_or_repeated(daemon, telegram_api)
    finally:
        if locker is not None:
            locker.close()
        pings.close()
    assert headlines(telegram_api) == [f"🔴 bot: not set in {env}: BOT_TOKEN"]


async def test_a_sent_message_whose_mark_is_refused_is_not_sent_again(tmp_path: Path) -> None:
    """The database turns read-only while Telegram is taking a message: the mark waits, nothing is repeated."""
    clock = Clock()
    with FakeBotAPI(clock=clock) as api:
        daemon = Harness.new(tmp_path / "state", api, clock)
        original = api.handlers["sendmessage"]

        def and_then_the_disk_goes_read_only(fake: FakeBotAPI, params: dict[str, Any]) -> Any:
            daemon.store._db.execute("PRAGMA query_only = 1")
            return original(fake, params)

        api.handlers["sendmessage"] = and_then_the_disk_goes_read_only
        try:
            for _ in range(3):
                daemon.feed(processes=(process("worker", "stopped"),))
                clock.advance(30)
            await daemon.deliver(within=60)
            assert len(api.messages) == 1
            api.handlers["sendmessage"] = original
            await daemon.deliver(within=60)  # still refused: it keeps trying to mark, and sends nothing
            assert len(api.messages) == 1
            daemon.store._db.execute("PRAGMA query_only = 0")
            await daemon.deliver(within=60)
            assert daemon.outbox() == [] and len(api.messages) == 1
            assert daemon.outbox("sent") != []
        finally:
            await daemon.close()
