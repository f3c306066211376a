"""The Telegram notifier against the fake Bot API: pacing, 429, 5xx, dropped connections, markup, limits, refusals."""

from __future__ import annotations

import io
import itertools
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from alerting_helpers import Clock, Harness, config, process
from opstui.logs import setup_logging
from opstui.model import Level
from opstui.notify import Notifier, Outbox, TelegramBot, TelegramError
from opstui.notify.render import esc, split_lines, visible_len
from opstui.notify.sender import read_status
from opstui.state import StateStore
from telegram_api import ALERTS_CHAT, TOKEN, FakeBotAPI, parse_html

SECRET_PART = TOKEN.split(":", 1)[1]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def api(clock: Clock) -> Iterator[FakeBotAPI]:
    with FakeBotAPI(clock=clock) as fake:
        yield fake


class Sender:
    """A notifier over its own outbox, driven on the test clock."""

    def __init__(self, tmp_path: Path, api: FakeBotAPI, clock: Clock, **telegram: Any) -> None:
        self.clock = clock
        self.api = api
        self.config = config(tmp_path, api, telegram=telegram)
        self.store = StateStore.in_dir(tmp_path)
        self.outbox = Outbox(self.store)
        self.notifier = self.new_notifier()

    def new_notifier(self) -> Notifier:
        return Notifier(self.config.telegram, self.store, tz=ZoneInfo("UTC"), clock=self.clock, jitter=lambda: 1.0)

    def queue(self, *texts: str) -> None:
        for text in texts:
            self.outbox.add(f"text:{text}", "text", {"lines": [esc(text)]}, now=self.clock())

    async def run(self, seconds: float) -> list[float]:
        """Let `seconds` pass; returns the (test clock) times at which the notifier woke to work."""
        until = self.clock() + seconds
        woke = []
        while True:
            woke.append(self.clock())
            next_at = await self.notifier.deliver_due()
            if next_at is None or next_at > until:
                break
            self.clock.t = max(self.clock.t, next_at)
        self.clock.t = until
        return woke

    def statuses(self) -> list[str]:
        return [r["status"] for r in self.store.query("SELECT status FROM outbox ORDER BY id")]


@pytest.fixture
async def sender(tmp_path: Path, api: FakeBotAPI, clock: Clock) -> AsyncIterator[Sender]:
    made = Sender(tmp_path, api, clock)
    yield made
    await made.notifier.bot.aclose()
    made.store.close()


def sends(api: FakeBotAPI) -> list[int]:
    return [c.status for c in api.calls if c.method == "sendmessage"]


async def test_messages_go_out_in_order_one_per_second_with_previews_off(sender: Sender, api: FakeBotAPI) -> None:
    api.flood_interval = 1.0  # Telegram's own flood control: we must never trip it
    sender.queue(*(f"message {i}" for i in range(5)))
    await sender.run(10)
    assert api.texts() == [f"message {i}" for i in range(5)]
    dates = [m.date for m in api.messages]
    assert all(b - a >= 1.0 for a, b in itertools.pairwise(dates))
    assert all(m.link_preview_disabled and m.parse_mode == "HTML" for m in api.messages)
    assert 429 not in sends(api)


async def test_at_most_twenty_a_minute_to_a_group(tmp_path: Path, api: FakeBotAPI, clock: Clock) -> None:
    sender = Sender(tmp_path, api, clock, per_chat_interval="0s")
    sender.queue(*(f"m{i}" for i in range(25)))
    await sender.run(59)
    assert len(api.texts()) == 20
    await sender.run(10)
    assert len(api.texts()) == 25
    await sender.notifier.bot.aclose()


async def test_429_waits_retry_after_and_loses_nothing(sender: Sender, api: FakeBotAPI) -> None:
    api.fail(status=429, description="Too Many Requests: retry after 34", parameters={"retry_after": 34})
    sender.queue("first", "second")
    woke = await sender.run(60)
    assert api.texts() == ["first", "second"]
    assert sends(api) == [429, 200, 200]
    assert woke[1] - woke[0] == 34  # not a request before Telegram said it may


async def test_5xx_with_html_bodies_backs_off_exponentially(sender: Sender, api: FakeBotAPI) -> None:
    from telegram_api import NGINX_502

    api.fail(times=5, status=502, html_body=NGINX_502)
    sender.queue("after the storm")
    woke = await sender.run(600)
    gaps = [round(b - a) for a, b in itertools.pairwise(woke)]
    assert gaps[:5] == [2, 4, 8, 16, 32]
    assert api.texts() == ["after the storm"]
    status = read_status(sender.store)
    assert status is not None and status.ok and status.problem is None


async def test_a_dropped_connection_is_retried_and_delivered_once(sender: Sender, api: FakeBotAPI) -> None:
    api.fail(times=2, drop=True)
    sender.queue("hello")
    await sender.run(30)
    assert api.texts() == ["hello"]
    assert sender.statuses() == ["sent"]


async def test_a_drop_after_telegram_took_it_is_resent_rather_than_lost(
    sender: Sender, api: FakeBotAPI, caplog: pytest.LogCaptureFixture
) -> None:
    api.fail(record_then_drop=True)
    sender.queue("maybe twice")
    await sender.run(30)
    # Telegram has no idempotency key: at-least-once is the honest promise, and the log says so.
    assert api.texts() == ["maybe twice", "maybe twice"]
    assert "a duplicate is possible" in caplog.text


async def test_cant_parse_entities_resends_once_as_plain_text(sender: Sender, api: FakeBotAPI) -> None:
    api.fail(status=400, description='Bad Request: can\'t parse entities: Unsupported start tag "br" at byte offset 3')
    sender.outbox.add("x", "text", {"lines": ["<b>disk</b> &lt;full&gt;"]}, now=sender.clock())
    await sender.run(5)
    assert [(m.text, m.parse_mode) for m in api.messages] == [("disk <full>", None)]


async def test_long_messages_are_split_on_lines_and_a_restart_resumes_where_it_stopped(
    tmp_path: Path, api: FakeBotAPI, clock: Clock
) -> None:
    harness = Harness.new(tmp_path, api, clock, alerts={"process_down": {"for": "0s"}})
    names = [f"worker-{i:03d}-" + "x" * 20 for i in range(300)]
    harness.feed(processes=tuple(process(n, status="stopped") for n in names))
    api.fail(status=502, description="Bad Gateway", after=1)  # the first part goes, then Telegram hiccups
    await harness.deliver(within=15)
    again = harness.restart()
    await again.deliver(within=60)
    texts = api.texts()
    parts = len(texts)
    assert parts > 2 and [t.split(" ", 1)[0] for t in texts] == [f"({i}/{parts})" for i in range(1, parts + 1)]
    assert all(len(t) <= 4096 for t in texts)  # the fake refuses longer ones, as Telegram does
    bodies = [t.split(") ", 1)[1] for t in texts]
    found = [line for body in bodies for line in body.splitlines() if line.startswith("🔴 worker-")]
    assert found == [f"🔴 {n} is stopped" for n in names]
    await harness.close()
    await again.close()


def test_splitting_counts_what_telegram_counts() -> None:
    lines = [f"<b>{esc('host & <db>')}</b> 😀" * 10 for _ in range(100)]
    parts = split_lines(lines)
    assert all(visible_len(p) <= 4000 for p in parts)
    assert [parse_html(p) for p in parts] == [p.replace("<b>", "").replace("</b>", "") for p in map(_plain, parts)]
    huge = split_lines(["<code>" + "x" * 9000 + "</code>"])
    assert [len(parse_html(p)) for p in huge] == [4000, 4000, 1000]


def _plain(part: str) -> str:
    import html

    return html.unescape(part)


async def test_every_dynamic_string_is_escaped(tmp_path: Path, api: FakeBotAPI, clock: Clock) -> None:
    harness = Harness.new(tmp_path, api, clock, alerts={"process_down": {"for": "0s"}})
    harness.feed(processes=(process('<b>bad</b> & "quoted" <br>', status="stopped"),))
    await harness.deliver(within=15)
    assert api.texts()[0].splitlines()[0] == '🔴 <b>bad</b> & "quoted" <br> is stopped'
    await harness.close()


@pytest.mark.parametrize(
    ("chat_fault", "said"),
    [
        ("unknown chat", "sendMessage: Telegram answered 400: Bad Request: chat not found"),
        ("kicked", "sendMessage: Telegram answered 403: Forbidden: bot was kicked from the supergroup chat"),
        ("revoked token", "sendMessage: Telegram answered 401: Unauthorized"),
    ],
)
async def test_permanent_refusals_stop_sending_surface_loudly_and_keep_the_messages(
    tmp_path: Path, api: FakeBotAPI, clock: Clock, caplog: pytest.LogCaptureFixture, chat_fault: str, said: str
) -> None:
    if chat_fault == "unknown chat":
        api.chats.pop(ALERTS_CHAT)
    elif chat_fault == "kicked":
        api.forbid(ALERTS_CHAT)
    else:
        api.token = "654321:TEST-another-fake-token"
    harness = Harness.new(tmp_path, api, clock, alerts={"process_down": {"for": "0s"}})
    harness.feed(processes=(process("api", status="stopped"),))
    await harness.deliver(within=15)
    harness.feed(processes=(process("api", status="stopped"), process("worker", status="stopped")))
    await harness.deliver(within=600)
    assert sends(api) == [400 if chat_fault == "unknown chat" else 403 if chat_fault == "kicked" else 401]
    assert said in caplog.text and "Nothing more is sent until [telegram] is fixed" in caplog.text
    delivery = next(c for c in harness.feed().checks if c.kind == "delivery")
    assert delivery.level is Level.CRITICAL
    assert delivery.detail == f"Telegram refuses: {said}; 2 notifications waiting; fix [telegram] and restart"
    assert len(harness.outbox()) == 2

    api.chats[ALERTS_CHAT] = {"id": ALERTS_CHAT, "type": "supergroup", "title": "Alerts"}  # someone fixed it
    api.forbidden.clear()
    api.token = TOKEN
    again = harness.restart()
    await again.deliver(within=30)
    assert [t.splitlines()[0] for t in api.texts()] == ["🔴 api is stopped", "🔴 worker is stopped"]
    assert next(c for c in again.feed().checks if c.kind == "delivery").level is Level.OK
    await harness.close()
    await again.close()


async def test_a_group_upgraded_to_a_supergroup_is_followed_and_remembered(sender: Sender, api: FakeBotAPI) -> None:
    api.migrate(ALERTS_CHAT, -1009876543210)
    sender.queue("one")
    await sender.run(5)
    assert api.texts(-1009876543210) == ["one"]
    await sender.notifier.bot.aclose()
    sender.notifier = sender.new_notifier()  # the next start of the daemon
    assert sender.notifier.chat_id == -1009876543210
    sender.queue("two")
    await sender.run(5)
    assert api.texts(-1009876543210) == ["one", "two"]
    assert [c.status for c in api.calls] == [400, 200, 200]


async def test_the_token_never_reaches_a_log_line_or_an_error(tmp_path: Path, api: FakeBotAPI, clock: Clock) -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    out = io.StringIO()
    setup_logging(fmt="json", level=logging.DEBUG, stream=out)  # the daemon's logging, at its chattiest
    try:
        sender = Sender(tmp_path, api, clock)
        api.fail(times=1, drop=True)
        api.fail(times=1, status=500, description="Internal Server Error")
        sender.queue("a")
        await sender.run(30)
        errors: list[str] = []
        dead = TelegramBot(TOKEN, api_base="http://127.0.0.1:9")  # nothing listens there
        for bot, method in ((dead, "getMe"), (sender.notifier.bot, "noSuchMethod")):
            try:
                await bot.call(method)
            except TelegramError as exc:
                errors.append(str(exc))
                logging.getLogger("opstui.test").warning("failed: %s", exc, exc_info=True)
        api.token = "654321:TEST-another-fake-token"
        sender.queue("b")
        await sender.run(30)
        await dead.aclose()
        await sender.notifier.bot.aclose()
        sender.store.close()
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    logged = out.getvalue()
    assert "sendMessage" in logged and "Unauthorized" in logged  # it did log what happened
    assert errors[0].startswith("getMe: cannot reach 127.0.0.1:9 (ConnectError")
    assert errors[1] == "noSuchMethod: Telegram answered 404: Not Found"
    for text in [logged, *errors]:
        assert SECRET_PART not in text


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("a < b", 'Unsupported start tag "" at byte offset 2'),
        ("line<br>break", 'Unsupported start tag "br" at byte offset 4'),
        ("é <b>bold", "Can't find end tag corresponding to start tag b"),
        ("ü</i>", "Unexpected end tag at byte offset 2"),
        ("<b>x</i>", 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
    ],
)
def test_the_fake_parses_html_as_telegram_does(text: str, error: str) -> None:
    from telegram_api import ApiError

    with pytest.raises(ApiError) as caught:
        parse_html(text)
    assert caught.value.description == f"Bad Request: can't parse entities: {error}"


def test_the_fake_decodes_entities_as_telegram_does() -> None:
    assert parse_html('<a href="x?a=1&amp;b=2">AT&amp;T &lt;3 &#x1F600; &ltd</a> & more') == "AT&T <3 😀 <d & more"


def test_old_history_is_pruned_but_waiting_notifications_never_are(tmp_path: Path) -> None:
    from opstui.alerts.runtime import prune_history

    store = StateStore.in_dir(tmp_path)
    outbox = Outbox(store)
    old = 1_000_000.0
    outbox.add("old-sent", "text", {"lines": ["a"]}, now=old)
    outbox.add("old-waiting", "text", {"lines": ["b"]}, now=old)
    sent = outbox.next_group(old)
    token, _ = outbox.claim(sent, old, in_doubt=0)
    outbox.sent(sent, token, old)
    store.add_samples([("queue_depth:q", old, 1.0), ("queue_depth:q", old + 100 * 86400, 2.0)])
    prune_history(store, old + 100 * 86400, keep_samples=8 * 86400)
    assert [r["idem_key"] for r in store.query("SELECT idem_key FROM outbox")] == ["old-waiting"]
    assert store.samples("queue_depth:q", 0) == [(old + 100 * 86400, 2.0)]
    store.close()


async def test_a_message_telegram_will_never_take_is_set_aside_not_blocking_the_rest(
    sender: Sender, api: FakeBotAPI, caplog: pytest.LogCaptureFixture
) -> None:
    api.fail(status=400, description="Bad Request: message is too long")
    sender.queue("doomed", "next")
    await sender.run(10)
    assert api.texts() == ["next"]
    assert sender.statuses() == ["failed", "sent"]
    assert "Telegram rejected a notification, which is kept in the outbox as failed" in caplog.text
