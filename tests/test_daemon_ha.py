"""High availability against a real PostgreSQL: one leader sends, a follower takes over within the lease when it
dies, and every alert transition reaches the chat exactly once across the failovers."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from daemon_helpers import DaemonProcess, get, until
from opstui.notify.outbox import Outbox
from opstui.notify.sender import Notifier
from opstui.state import Fence, Fenced
from opstui.state_postgres import PostgresStore
from telegram_api import ALERTS_CHAT, TOKEN, FakeBotAPI

LEASE = 3.0


def ha_config(tmp_path: Path, name: str, dsn: str, api: FakeBotAPI, watched: Path) -> Path:
    """One host's config: its own state dir, the shared database, and two env files both hosts can read."""
    checks = "".join(
        f'[[env]]\nname = "{part}"\nrequired = ["{part.upper()}_TOKEN"]\nfile = "{watched / part}.env"\n'
        'interval = "0.3s"\n'
        for part in ("first", "second")
    )
    path = tmp_path / f"{name}.toml"
    path.write_text(
        f"""
[general]
instance = "{name}"
state_dir = "{tmp_path / name}"
[host]
enabled = false
{checks}
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
[daemon.ha]
dsn = "{dsn}"
lease = "{LEASE}s"
timeout = "1s"
"""
    )
    return path


def env_file(watched: Path, part: str, *, ok: bool) -> None:
    (watched / f"{part}.env").write_text(f"{part.upper()}_TOKEN={'set' if ok else ''}\n")


def readyz(daemon: DaemonProcess) -> dict[str, Any]:
    return json.loads(get(f"http://{daemon.address()}/readyz")[1])


def lease_row(dsn: str) -> dict[str, Any]:
    rows = fetch(dsn, "SELECT holder, token, renewed_at, acquired_at FROM leases")
    return rows[0] if rows else {}


def fetch(dsn: str, sql: str) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(dsn)
        try:
            return [dict(row) for row in await conn.fetch(sql)]
        finally:
            await conn.close()

    return asyncio.run(read())


def headlines(api: FakeBotAPI) -> list[str]:
    return [m.text.splitlines()[0] for m in api.messages]


def test_kill_the_leader_the_follower_takes_over_within_the_lease_and_each_transition_arrives_once(
    tmp_path: Path, pg_dsn: str, telegram_api: FakeBotAPI
) -> None:
    watched = tmp_path / "app"
    watched.mkdir()
    env_file(watched, "first", ok=True)
    env_file(watched, "second", ok=True)
    a_config = ha_config(tmp_path, "vps-1", pg_dsn, telegram_api, watched)
    b_config = ha_config(tmp_path, "vps-2", pg_dsn, telegram_api, watched)
    a = DaemonProcess.opstui(a_config)
    b: DaemonProcess | None = None
    try:
        until(lambda: readyz(a).get("role", "").startswith("leading"), 20, "vps-1 to lead")
        b = DaemonProcess.opstui(b_config)
        until(lambda: "vps-1 on" in readyz(b).get("role", ""), 20, "vps-2 to stand by")  # type: ignore[arg-type]

        env_file(watched, "first", ok=False)
        telegram_api.wait_for_messages(1, timeout=20)
        assert headlines(telegram_api) == ["🔴 first: not set in " + str(watched / "first.env") + ": FIRST_TOKEN"]

        # Once Telegram has it and the leader has marked it sent (a SIGKILL between the two is the one case where
        # a message may go out twice: at least once, see docs/alerts.md), the leader dies without a word.
        until(lambda: [r["status"] for r in fetch(pg_dsn, "SELECT status FROM outbox")] == ["sent"], 10, "the mark")
        a.kill()
        last_renewal = lease_row(pg_dsn)["renewed_at"]
        env_file(watched, "second", ok=False)
        env_file(watched, "first", ok=True)
        telegram_api.wait_for_messages(3, timeout=30)
        taken = lease_row(pg_dsn)
        assert taken["holder"].startswith("vps-2@") and taken["token"] == 2
        assert taken["acquired_at"] - last_renewal <= LEASE + 1.0  # within the lease of the leader's last word

        # The old leader comes back: it stands by, and sends nothing it sent before.
        a = DaemonProcess.opstui(a_config)
        until(lambda: "vps-2 on" in readyz(a).get("role", ""), 20, "vps-1 to stand by")
        time.sleep(1)
        assert len(telegram_api.messages) == 3, headlines(telegram_api)

        # The new leader stops cleanly: it hands the lease over, and vps-1 leads again at once.
        assert b.stop() == 0
        until(lambda: readyz(a).get("role", "").startswith("leading"), 2 * LEASE, "vps-1 to lead again")
        env_file(watched, "first", ok=False)
        telegram_api.wait_for_messages(4, timeout=20)
        time.sleep(1)
    finally:
        a.stop()
        if b is not None:
            b.stop()
    lines = headlines(telegram_api)
    assert lines[0].startswith("🔴 first") and lines[3].startswith("🔴 first")
    assert sorted(lines[1:3]) == sorted(
        [
            "✅ Resolved: first: not set in " + str(watched / "first.env") + ": FIRST_TOKEN",
            "🔴 second: not set in " + str(watched / "second.env") + ": SECOND_TOKEN",
        ]
    )
    assert len(lines) == 4

    store = PostgresStore(pg_dsn)
    try:
        rows = store.query("SELECT status, claim_token FROM outbox ORDER BY id")
    finally:
        store.close()
    assert [r["status"] for r in rows] == ["sent"] * 4
    assert [r["claim_token"] for r in rows] == [1, 2, 2, 3]


async def test_a_send_under_way_when_the_lead_changes_is_marked_by_the_old_leader_and_never_repeated(
    pg_dsn: str, telegram_api: FakeBotAPI
) -> None:
    old, new = PostgresStore(pg_dsn), PostgresStore(pg_dsn)
    config = _telegram(telegram_api)
    try:
        with old.transaction() as db:  # the lease as the old leader holds it
            db.execute(
                "INSERT INTO leases (name, holder, token, expires_at, acquired_at, renewed_at) "
                "VALUES ('leader', 'old', 1, 0, 0, 0)"
            )
        old.fence = Fence(1, time.monotonic() + 60)
        Outbox(old).add("firing-1", "text", {"lines": ["worker is crash-looping"]}, now=time.time())
        sender = Notifier(config, old, tz=ZoneInfo("UTC"))
        receiver = Notifier(config, new, tz=ZoneInfo("UTC"))
        slow = asyncio.create_task(_slowly(telegram_api, sender))
        await asyncio.to_thread(until, lambda: bool(telegram_api.messages), 10, "the message to arrive")

        # Meanwhile the lease changes hands (the old leader was paused, or cut off from the database).
        with new.transaction() as db:
            db.execute("UPDATE leases SET holder = 'new', token = 2")
        new.fence = Fence(2, time.monotonic() + 60)
        assert await receiver.deliver_due() is not None  # it waits: the old leader may still be sending

        await slow  # the old leader's send completes, and it marks it sent (its claim is still its own)
        assert await receiver.deliver_due() is None
        assert [m.text for m in telegram_api.messages] == ["worker is crash-looping"]

        # The old leader can queue and claim nothing more.
        with pytest.raises(Fenced, match="another daemon leads now"):
            Outbox(old).add("firing-2", "text", {"lines": ["x"]}, now=time.time())
        await sender.bot.aclose()
        await receiver.bot.aclose()
    finally:
        old.close()
        new.close()


async def _slowly(api: FakeBotAPI, notifier: Notifier) -> None:
    original = api.handlers["sendmessage"]

    def slow_send(fake: FakeBotAPI, params: dict[str, Any]) -> Any:
        result = original(fake, params)
        time.sleep(1.0)  # Telegram took it; its answer is still on the way
        return result

    api.handlers["sendmessage"] = slow_send
    try:
        await notifier.deliver_due()
    finally:
        api.handlers["sendmessage"] = original


def _telegram(api: FakeBotAPI) -> Any:
    from opstui.config.alerts import TelegramConfig

    return TelegramConfig(token=TOKEN, chat_id=ALERTS_CHAT, api_base=api.url, timeout=2.0)


def test_a_daemon_that_cannot_reach_the_shared_database_keeps_collecting_and_says_so(
    tmp_path: Path, telegram_api: FakeBotAPI
) -> None:
    from opstui.demo.servers import free_port

    watched = tmp_path / "app"
    watched.mkdir()
    env_file(watched, "first", ok=True)
    env_file(watched, "second", ok=True)
    dsn = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    daemon = DaemonProcess.opstui(ha_config(tmp_path, "vps-1", dsn, telegram_api, watched))
    try:
        ready = readyz(daemon)
        assert ready["ready"] is False and ready["role"].startswith("standby: the leader is unknown")
        assert any("cannot reach the shared state database" in p for p in ready["problems"])
        # It runs: the scheduler ticks and the sources are read.
        until(lambda: get(f"http://{daemon.address()}/healthz")[0] == 200, 10, "a tick")
        assert "opstui_source_up{" in get(f"http://{daemon.address()}/metrics")[1]
    finally:
        assert daemon.stop(signal.SIGINT) == 0


async def test_the_tui_header_says_which_daemon_leads_while_this_one_stands_by() -> None:
    import dataclasses

    from tui_sample import leader_daemon, sample_app

    standby = dataclasses.replace(leader_daemon(), leader=False, led_by="bot-vps-2")
    app = sample_app(presence=lambda: standby)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        assert "daemon: standby · led by bot-vps-2  " in app.dashboard.header.left.plain
    unknown = dataclasses.replace(standby, led_by=None)
    app = sample_app(presence=lambda: unknown)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        assert "daemon: standby · leader unknown  " in app.dashboard.header.left.plain


def test_a_silence_set_on_any_host_is_the_one_the_leader_reads(
    tmp_path: Path, pg_dsn: str, telegram_api: FakeBotAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    from opstui.alerts import active_silences
    from opstui.cli import main

    watched = tmp_path / "app"
    watched.mkdir()
    config = ha_config(tmp_path, "vps-2", pg_dsn, telegram_api, watched)
    assert main(["-c", str(config), "silence", "worker", "2h", "-m", "deploying"]) == 0
    assert "worker" in capsys.readouterr().out
    store = PostgresStore(pg_dsn)
    try:
        assert [(s.pattern, s.comment) for s in active_silences(store)] == [("worker", "deploying")]
    finally:
        store.close()
    assert not (tmp_path / "vps-2").exists()  # nothing went to this host's own state
