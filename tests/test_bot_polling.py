"""The bot's long polling against the fake Bot API: set-up, 409s, outages, a revoked token, restarts, leadership."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading

import httpx
import pytest

from bot_helpers import ADMIN, SECRET_PART, until, write_bot_config
from opstui.alerts import active_silences, stored_delivery_checks
from opstui.bot import core, start_bot
from opstui.bot.core import OFFSET_KEY
from opstui.bot.status import read_bot_status
from opstui.daemon import run_daemon
from opstui.engine import Engine
from opstui.logs import setup_logging
from opstui.model import Level
from opstui.notify.telegram import Failure, TelegramError
from opstui.state import StateStore
from telegram_api import NGINX_502, TOKEN, FakeBotAPI


@pytest.fixture
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Back-off in tenths of seconds, so a test of it does not sit through real minutes."""
    monkeypatch.setattr(core, "BACKOFF_BASE", 0.1)
    monkeypatch.setattr(core, "CONFLICT_BACKOFF_BASE", 0.2)


class Rogue:
    """Another program polling the same bot (a forgotten second instance): a thread in a getUpdates loop."""

    def __init__(self, api: FakeBotAPI) -> None:
        self.api = api
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self.stop.is_set():
                client.post(f"{self.api.url}/bot{TOKEN}/getUpdates", json={"timeout": 1})

    def __enter__(self) -> Rogue:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


async def test_at_start_it_removes_a_webhook_and_publishes_its_commands(make_bot) -> None:  # type: ignore[no-untyped-def]
    make_bot.api.webhook = "https://old-deployment.example/hook"
    bot = make_bot()
    answer = await bot.says(ADMIN, "/status")
    assert answer.text.startswith("🔴 web-1")
    api = bot.api
    assert api.webhook is None
    assert [c["command"] for c in api.commands or []] == [
        "status", "health", "queue", "logs", "restart", "recover", "silence", "silences", "unsilence", "report",
        "test", "whoami", "help",
    ]  # fmt: skip
    polls = api.calls_to("getUpdates")
    assert polls[0].params["allowed_updates"] == ["message", "callback_query"] and polls[0].params["timeout"] == 2
    assert "offset" not in polls[0].params, "a first start takes what is waiting"
    handled = api.updates[-1]["update_id"] + 1
    await until(  # the poll after it (parked until its 2 s are up) says so
        lambda: any(c.params.get("offset") == handled for c in api.calls_to("getUpdates")), "the confirming poll"
    )


async def test_a_409_from_another_poller_is_survived_and_reported(make_bot, quick_backoff, caplog) -> None:  # type: ignore[no-untyped-def]
    bot = make_bot()
    await bot.says(ADMIN, "/whoami")
    with Rogue(bot.api):
        await until(lambda: bot.bot.status.state == "conflict", "the conflict to be noticed")
        check = bot.bot.check()
        assert check is not None and check.kind == "bot" and check.level is Level.OK, "a moment of overlap is fine"
        assert "another program polls this bot's updates (409 conflict)" in (check.detail or "")
        bot.clock.advance(61)
        check = bot.bot.check()
        assert check is not None and check.level is Level.WARNING, "a conflict that lasts is a warning"
        assert not bot.bot._task.done(), "it keeps trying: no crash, no crash loop"  # type: ignore[union-attr]
    assert "another program polls this bot's updates (409 conflict)" in caplog.text
    answer = await bot.says(ADMIN, "/status")
    assert answer.text.startswith("🔴 web-1")
    await until(lambda: bot.bot.status.state == "polling", "polling again")
    check = bot.bot.check()
    assert check is not None and check.level is Level.OK and "answers commands" in (check.detail or "")


async def test_a_webhook_set_by_someone_else_is_reported_not_fought(make_bot, quick_backoff) -> None:  # type: ignore[no-untyped-def]
    bot = make_bot()
    await bot.says(ADMIN, "/whoami")
    bot.api.webhook = "https://someone-else.example/hook"  # the next poll (within 2 s) meets it
    await until(lambda: bot.bot.status.state == "conflict", "the webhook conflict")
    assert "a webhook was set for this bot" in (bot.bot.status.problem or "")
    await asyncio.sleep(0.5)
    assert bot.api.webhook is not None, "opstui does not delete another deployment's webhook while running"
    bot.api.webhook = None
    assert (await bot.says(ADMIN, "/whoami")).text.startswith("🪪")


async def test_outages_back_off_and_recover_by_themselves(make_bot, quick_backoff, caplog) -> None:  # type: ignore[no-untyped-def]
    make_bot.api.fail("getUpdates", times=2, status=502, html_body=NGINX_502)
    make_bot.api.fail("getUpdates", times=1, drop=True, after=2)
    bot = make_bot()
    answer = await bot.says(ADMIN, "/status")
    assert answer.text.startswith("🔴 web-1")
    warnings = [r.getMessage() for r in caplog.records if r.name == "opstui.bot" and r.levelno == logging.WARNING]
    assert warnings[0].startswith("Telegram bot: getUpdates: Telegram answered HTTP 502 without a JSON body")
    assert len(warnings) <= 2, "one line per kind of trouble, not one per retry"
    assert bot.bot.status.state == "polling"


async def test_a_bot_stopped_during_an_outage_calls_telegram_no_more(make_bot, quick_backoff) -> None:  # type: ignore[no-untyped-def]
    make_bot.api.outage(status=502, html_body=NGINX_502)
    bot = make_bot()
    await until(lambda: len(bot.api.calls) >= 3, "a few failed calls")
    await until(lambda: bot.bot.status.state == "unreachable", "the outage to be noticed")
    await bot.stop()  # a daemon's SIGTERM, or a reload that changed [telegram] token
    calls = len(bot.api.calls)
    await asyncio.sleep(0.5)
    assert len(bot.api.calls) == calls, "no Telegram call after stop() returned"
    task = bot.bot._task
    assert task is not None and task.done() and (task.cancelled() or task.exception() is None)


@pytest.mark.parametrize("failures", [7, 1_025, 100_000])
async def test_the_back_off_of_a_long_outage_stays_at_its_cap(make_bot, caplog, failures: int) -> None:  # type: ignore[no-untyped-def]
    bot = make_bot(start=False).bot
    bot.jitter = lambda: 1.0  # the longest wait jitter may pick
    bot._failures = failures - 1  # e.g. 17 hours of api.telegram.org blocked, at a minute a try
    bot._stopped.set()  # the wait returns at once: what it would have waited is in the log line
    outage = TelegramError("getUpdates: cannot reach api.telegram.org", failure=Failure.TRANSIENT)
    assert await bot._failed(outage) is False, "an outage, however long, is waited out"
    assert "polling again in 60s" in caplog.text
    assert bot.status.state == "unreachable"


async def test_a_revoked_token_stops_polling_loudly(make_bot, caplog) -> None:  # type: ignore[no-untyped-def]
    make_bot.api.token = "654321:TEST-another-fake-token"  # the bot's token is no longer valid
    bot = make_bot()
    await until(lambda: bot.bot._task.done(), "polling to stop")  # type: ignore[union-attr]
    check = bot.bot.check()
    assert check is not None and check.level is Level.CRITICAL
    assert "Telegram refuses the bot" in (check.detail or "") and "fix [telegram] and restart" in (check.detail or "")
    stored = [c for c in stored_delivery_checks(bot.store, bot.clock()) if c.kind == "bot"]
    assert stored and stored[0].level is Level.CRITICAL, "the TUI and `opstui check` see it too"
    assert [c.method for c in bot.api.calls] == ["getme"], "nothing more is tried"
    assert "Telegram refuses the bot token" in caplog.text


async def test_a_restart_does_not_handle_a_command_again(make_bot) -> None:  # type: ignore[no-untyped-def]
    first = make_bot()
    said = await first.says(ADMIN, "/silence worker 1h deploy")
    assert said.text.startswith("🔕 silence 1 on 'worker'")
    offset = first.store.get_meta(OFFSET_KEY)
    await first.stop()
    # As if it died right after handling it, before its next poll told Telegram: the update is waiting again.
    first.api.confirmed_below = 0
    assert any("/silence" in u["message"]["text"] for u in first.api.pending_updates())

    polls = len(first.api.calls_to("getUpdates"))
    second = make_bot()  # the same instance: the same state store
    answer = await second.says(ADMIN, "/silences")
    assert answer.text.startswith("🔕 silence 1 on 'worker'")
    assert len(active_silences(second.store)) == 1, "the silence was set once"
    assert second.api.calls_to("getUpdates")[polls].params["offset"] == int(offset or 0)
    assert sum(text.startswith("🔕 silence 1") for text in second.api.texts(ADMIN)) == 2  # /silence, /silences


async def test_only_the_leader_polls(make_bot) -> None:  # type: ignore[no-untyped-def]
    leading = {"a": False, "b": False}
    follower = make_bot(instance="b", is_leader=lambda: leading["b"])
    await asyncio.sleep(1.5)
    assert follower.api.calls == [], "a daemon that does not lead makes no Telegram call at all"

    leader = make_bot(instance="a", is_leader=lambda: leading["a"])
    leading["a"] = True
    await leader.bot.leadership_changed(True)
    assert "👑 a: leading" in (await leader.says(ADMIN, "/status")).text

    leading.update(a=False, b=True)  # a hand-over
    answer = await follower.says(ADMIN, "/status")
    assert "👑 b: leading" in answer.text
    assert leader.bot.check() is None, "the fact is the leader's to give"
    await follower.stop()
    polls = len(follower.api.calls_to("getUpdates"))
    await asyncio.sleep(1.5)
    assert len(follower.api.calls_to("getUpdates")) == polls, "the old leader stopped polling"


async def test_the_token_never_reaches_a_log_line_a_message_or_the_audit_log(make_bot, quick_backoff) -> None:  # type: ignore[no-untyped-def]
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    out = io.StringIO()
    setup_logging(fmt="json", level=logging.DEBUG, stream=out)  # the daemon's logging, at its chattiest
    try:
        make_bot.api.fail("getUpdates", times=1, status=502, html_body=NGINX_502)
        make_bot.api.fail("getUpdates", times=1, drop=True, after=1)
        bot = make_bot()
        asked = await bot.says(ADMIN, f"/recover {TOKEN}")
        asked = await bot.says(ADMIN, "/restart worker")
        await bot.press(ADMIN, asked)
        await until(lambda: asked.text.startswith("✅"), "the restart")
        await bot.says(ADMIN, "/test")
        await bot.stop()
        revoked = make_bot(instance="revoked", start=False)
        revoked.api.token = "654321:TEST-another-fake-token"
        revoked.start()
        await until(lambda: revoked.bot._task.done(), "the revoked bot to stop")  # type: ignore[union-attr]
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    logged = out.getvalue()
    assert "Telegram bot: getUpdates" in logged and "Unauthorized" in logged  # it did log what happened
    said = [text for m in bot.api.messages for text in (m.submitted, *m.edits)]
    audit = json.dumps([e.as_json() for e in bot.audit()])
    status = revoked.store.get_meta("bot.telegram") or ""
    assert "Unauthorized" in status
    for text in [logged, *said, audit, status, repr(revoked.bot.status)]:
        assert SECRET_PART not in text


async def test_the_daemon_answers_commands_when_the_bot_is_enabled(make_bot, tmp_path) -> None:  # type: ignore[no-untyped-def]
    api = make_bot.api
    config = write_bot_config(tmp_path, api, instance="vps-1")
    stop = asyncio.Event()
    daemon = asyncio.create_task(run_daemon(config, stop=stop))
    try:
        api.user_says(ADMIN, "/status")
        answers = await until(lambda: api.texts(ADMIN), "the daemon's answer", limit=30)
        assert answers[0].startswith("🟢 vps-1 · ok") and "👑 vps-1: leading (a single daemon)" in answers[0]
    finally:
        stop.set()
        assert await asyncio.wait_for(daemon, 10) == 0
    store = StateStore.in_dir(config.state_dir())
    try:
        status = read_bot_status(store)
        assert status is not None and status.state == "polling" and status.username == "opstui_test_bot"
        assert store.get_meta(OFFSET_KEY) == str(api.updates[-1]["update_id"] + 1)
    finally:
        store.close()


async def test_stopping_the_bot_stops_its_runs_and_says_so(make_bot, tmp_path) -> None:  # type: ignore[no-untyped-def]
    api = make_bot.api
    config = write_bot_config(tmp_path, api, instance="vps-1")
    engine = Engine([], instance="vps-1")
    store = StateStore.in_dir(config.state_dir())
    bot = start_bot(config, engine=engine, store=store)
    assert bot is not None and engine.processors == [bot.add_status], "its fact goes ahead of the alert rules"
    try:
        api.user_says(ADMIN, "/recover slow")
        asked = await until(lambda: next(iter(api.messages), None), "the confirmation")
        query = api.press(ADMIN, asked)
        await until(lambda: query in api.answers and asked.text.startswith("▶️"), "the run to start")
        await bot.stop()
        assert asked.text.startswith("❌ slow\ncancelled in ") and "opstui is stopping" in asked.text
        assert engine.processors == []
        assert [e.result for e in bot.actions().audit.recent(5)] == ["cancelled"]
    finally:
        store.close()
    assert (
        start_bot(
            config.model_copy(update={"bot": config.bot.model_copy(update={"enabled": False})}),
            engine=engine,
            store=store,
        )
        is None
    )
