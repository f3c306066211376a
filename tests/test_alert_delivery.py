"""What reaches the Telegram chat, scenario by scenario, on a controllable clock against the fake Bot API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from alerting_helpers import START, Clock, Harness, health, process, queue
from opstui.alerts import silence, unsilence
from opstui.model import Level
from telegram_api import FakeBotAPI


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def daemon(tmp_path: Path, clock: Clock) -> AsyncIterator[Harness]:
    with FakeBotAPI(clock=clock) as api:
        harness = Harness.new(tmp_path / "state", api, clock)
        yield harness
        await harness.close()


def crash_loop(harness: Harness, *, minutes: int, restarts: int, every: float = 60.0) -> int:
    """The worker restarts once a minute (PM2's counter goes up); returns the counter at the end."""
    for _ in range(int(minutes * 60 / every)):
        restarts += 1
        harness.feed(processes=(process("worker", restarts=restarts),))
        harness.clock.advance(every)
    return restarts


async def test_a_restart_loop_fires_once_and_resolves_once(daemon: Harness) -> None:
    restarts = 283
    for _ in range(30):  # half an hour of crash-looping, read every minute, delivered as it goes
        restarts += 1
        daemon.feed(processes=(process("worker", restarts=restarts),))
        await daemon.deliver(within=60)
    for _ in range(40):  # then it is fixed and stays up
        daemon.feed(processes=(process("worker", restarts=restarts),))
        await daemon.deliver(within=60)
    texts = daemon.api.texts()
    assert len(texts) == 2, texts
    assert texts[0].startswith("🔴 worker is crash-looping: 3 restarts in the last 10m")
    assert "critical since 08:03 UTC · restart_loop · demo" in texts[0]
    assert texts[1].startswith("✅ Resolved: worker is crash-looping")
    assert daemon.outbox() == []


async def test_ten_alerts_in_one_second_arrive_as_one_message(daemon: Harness) -> None:
    names = [f"bot-{i}" for i in range(10)]
    for down in range(1, 11):  # one more process is found stopped every 0.1 s
        daemon.feed(
            processes=tuple(process(n, status="stopped" if i < down else "online") for i, n in enumerate(names))
        )
        daemon.clock.advance(0.1)
    daemon.clock.advance(29)
    daemon.feed(processes=tuple(process(n, status="stopped") for n in names))
    daemon.clock.advance(2)
    daemon.feed(processes=tuple(process(n, status="stopped") for n in names))
    await daemon.deliver(within=30)
    texts = daemon.api.texts()
    assert len(texts) == 1, texts
    lines = texts[0].splitlines()
    assert lines[0] == "🔴 demo: 10 firing"
    assert [line for line in lines if line.startswith("🔴 bot-")] == [f"🔴 bot-{i} is stopped" for i in range(10)]


async def test_telegram_down_for_an_hour_loses_nothing_and_duplicates_nothing(daemon: Harness) -> None:
    daemon.api.outage(status=502, description="Bad Gateway", html_body="<html>502 Bad Gateway</html>")
    timeline = []
    for minute in range(60):
        if minute == 5:
            timeline.append("api down")
        if minute == 40:
            timeline.append("api back")
        api_status = "stopped" if 5 <= minute < 40 else "online"
        worker_status = "stopped" if minute >= 20 else "online"
        snap = daemon.feed(processes=(process("api", status=api_status), process("worker", status=worker_status)))
        if minute == 30:
            delivery = next(c for c in snap.checks if c.kind == "delivery")
            assert delivery.level is Level.WARNING
            assert "Telegram failing for" in (delivery.detail or "") and "HTTP 502" in (delivery.detail or "")
        await daemon.deliver(within=60)
    assert daemon.api.texts() == []
    assert len(daemon.outbox()) == 3
    attempts = [c for c in daemon.api.calls if c.method == "sendmessage"]
    assert 40 <= len(attempts) <= 120  # backing off to about one try a minute, not hammering

    daemon.api.outage()  # Telegram is back
    daemon.feed(processes=(process("api"), process("worker", status="stopped")))
    await daemon.deliver(within=120)
    texts = daemon.api.texts()
    assert [t.splitlines()[0] for t in texts] == [
        "🔴 api is stopped",
        "🔴 worker is stopped",
        "✅ Resolved: api is stopped",
    ]
    assert "critical since 08:05 UTC" in texts[0]  # when it happened, not when it was finally delivered
    daemon.clock.advance(600)
    daemon.feed(processes=(process("api"), process("worker", status="stopped")))
    await daemon.deliver(within=600)
    assert len(daemon.api.texts()) == 3
    assert daemon.outbox() == []


async def test_a_daemon_restart_mid_incident_sends_no_second_firing(daemon: Harness) -> None:
    down = (process("api", status="stopped"),)
    for _ in range(10):
        daemon.feed(processes=down)
        await daemon.deliver(within=5)
    assert len(daemon.api.texts()) == 1
    again = daemon.restart()
    try:
        for _ in range(20):
            again.feed(processes=down)
            await again.deliver(within=5)
        assert [a.state for a in again.feed(processes=down).alerts] == ["firing"]
        assert len(again.api.texts()) == 1
        for _ in range(3):
            again.clock.advance(5)
            again.feed(processes=(process("api"),))
        await again.deliver(within=15)
        assert [t.splitlines()[0] for t in again.api.texts()] == ["🔴 api is stopped", "✅ Resolved: api is stopped"]
    finally:
        await again.close()


async def test_a_crash_between_queueing_and_sending_still_sends_it_once(daemon: Harness) -> None:
    daemon.feed(processes=(process("api", status="stopped"),))
    daemon.clock.advance(31)
    daemon.feed(processes=(process("api", status="stopped"),))  # fires, queued; the daemon dies before sending
    again = daemon.restart()
    try:
        for _ in range(4):
            again.feed(processes=(process("api", status="stopped"),))
            await again.deliver(within=5)
        assert again.api.texts() == [again.api.texts()[0]] and again.api.texts()[0].startswith("🔴 api is stopped")
    finally:
        await again.close()


async def test_redis_down_folds_the_alerts_it_causes(daemon: Harness) -> None:
    kinds = {"redis main": "redis", "http": "http", "pm2": "pm2"}
    restarts = 10
    for step in range(12):  # Redis refuses; the worker crash-loops, /health fails: all because of Redis
        restarts += 1
        daemon.feed(
            kinds=kinds,
            down=["redis main"],
            processes=(process("worker", restarts=restarts),),
            queues=(queue("incoming", 5),),
            health=(health("api", ok=False),),
        )
        await daemon.deliver(within=5 if step < 8 else 120)
    texts = daemon.api.texts()
    assert len(texts) == 1, texts
    lines = texts[0].splitlines()
    assert lines[0] == "🔴 redis main cannot be read: connection refused at 127.0.0.1:6380"
    assert "   also affected (1):" in lines
    assert "   • health api failing: failing" in lines
    # The restart loop came later than the root's message: folded quietly, visible in the TUI and check.
    snap = daemon.feed(kinds=kinds, down=["redis main"], processes=(process("worker", restarts=restarts),))
    folded = {a.key: a for a in snap.alerts}["restart_loop:pm2:worker"]
    assert (folded.state, folded.cause) == ("firing", "source_down:redis main")

    for _ in range(3):  # Redis is back; the worker still crash-loops: that is now its own news
        daemon.clock.advance(5)
        restarts += 1
        daemon.feed(kinds=kinds, processes=(process("worker", restarts=restarts),), health=(health("api", ok=True),))
    await daemon.deliver(within=15)
    texts = daemon.api.texts()
    assert len(texts) == 2, texts
    assert texts[1].splitlines()[0] == "🔴 demo: 2 resolved, 1 firing"
    assert "✅ Resolved: redis main cannot be read: connection refused at 127.0.0.1:6380" in texts[1]
    assert "✅ Resolved: health api failing: failing" in texts[1]
    assert "🔴 worker is crash-looping: " in texts[1]


async def test_an_alert_that_begins_long_after_an_outage_is_not_folded_under_it(daemon: Harness) -> None:
    kinds = {"postgres replica": "postgres", "pm2": "pm2"}
    for _ in range(4):  # the replica goes down at night and stays down
        daemon.feed(kinds=kinds, down=["postgres replica"], processes=(process("worker", restarts=0),))
        await daemon.deliver(within=5)
    assert [t.splitlines()[0] for t in daemon.api.texts()] == [
        "🔴 postgres replica cannot be read: connection refused at 127.0.0.1:6380"
    ]
    daemon.clock.advance(3600)  # an hour later the bot starts crash-looping, for reasons of its own
    for restarts in range(1, 7):
        daemon.clock.advance(20)
        daemon.feed(kinds=kinds, down=["postgres replica"], processes=(process("worker", restarts=restarts),))
        await daemon.deliver(within=5)
    texts = daemon.api.texts()
    assert len(texts) == 2, texts
    assert texts[1].startswith("🔴 worker is crash-looping: ")


async def test_a_silence_suppresses_until_it_expires(daemon: Harness) -> None:
    made = silence(daemon.store, "worker", "1h", by="cli ann (pts/1)", comment="deploying", now=daemon.clock())
    for _ in range(10):
        daemon.feed(processes=(process("worker", status="stopped"), process("api", status="stopped")))
        daemon.clock.advance(10)
    snap = daemon.feed(processes=(process("worker", status="stopped"), process("api", status="stopped")))
    await daemon.deliver(within=15)
    alerts = {a.subject: a for a in snap.alerts}
    assert alerts["worker"].state == "silenced"
    assert alerts["worker"].muted_by == made.describe()
    assert "deploying" in (alerts["worker"].muted_by or "")
    assert [t.splitlines()[0] for t in daemon.api.texts()] == ["🔴 api is stopped"]

    daemon.clock.advance(3600)  # the silence is over and the worker is still down: now it is news
    daemon.feed(processes=(process("worker", status="stopped"), process("api")))
    await daemon.deliver(within=15)
    assert "🔴 worker is stopped" in [t.splitlines()[0] for t in daemon.api.texts()]


async def test_an_alert_that_fires_and_resolves_under_a_silence_sends_nothing(daemon: Harness) -> None:
    silence(daemon.store, "restart_loop", "30m", by="telegram 111222333", now=daemon.clock())
    restarts = crash_loop(daemon, minutes=10, restarts=0)
    for _ in range(25):
        daemon.feed(processes=(process("worker", restarts=restarts),))
        daemon.clock.advance(60)
    assert unsilence(daemon.store, "restart_loop", now=daemon.clock()) == []  # it had expired already
    await daemon.deliver(within=60)
    assert daemon.api.texts() == []
    logged = daemon.store.query("SELECT event, notified FROM alert_log ORDER BY id")
    assert [(r["event"], r["notified"]) for r in logged] == [("fired", 0), ("resolved", 0)]


async def test_a_maintenance_window_suppresses(tmp_path: Path, clock: Clock) -> None:
    window = {"name": "nightly deploy", "cron": "0 13 * * *", "duration": "30m", "timezone": "Asia/Almaty"}
    clock.t = START + 10 * 60  # 13:10 in Almaty (UTC+5)
    with FakeBotAPI(clock=clock) as api:
        daemon = Harness.new(tmp_path, api, clock, alerts={"maintenance": [window]})
        try:
            for _ in range(10):
                snap = daemon.feed(processes=(process("api", status="stopped"),))
                await daemon.deliver(within=60)
            assert api.texts() == []
            assert snap.alerts[0].muted_by == "maintenance 'nightly deploy' (0 13 * * *, 30m)"
            clock.advance(11 * 60)  # 13:31: the window has closed and the api is still down
            daemon.feed(processes=(process("api", status="stopped"),))
            await daemon.deliver(within=15)
            assert [t.splitlines()[0] for t in api.texts()] == ["🔴 api is stopped"]
        finally:
            await daemon.close()


async def test_reminders_every_four_hours_and_a_message_when_it_gets_worse(daemon: Harness) -> None:
    for _ in range(int(10 * 3600 / 300)):  # ten hours of a queue backing up, read every five minutes
        depth = 150 if daemon.clock() < START + 5 * 3600 else 1500
        daemon.feed(queues=(queue("incoming", depth),))
        await daemon.deliver(within=300)
    heads = [t.splitlines()[0] for t in daemon.api.texts()]
    assert heads == [
        "🟠 queue incoming has 150 waiting (limit 100)",
        "🔁 Still firing: queue incoming has 150 waiting (limit 100)",
        "⏫ Now critical: queue incoming has 1500 waiting (limit 1000)",
        "🔁 Still firing: queue incoming has 1500 waiting (limit 1000)",
    ]


async def test_a_queue_that_backs_up_every_few_minutes_is_held_as_flapping(daemon: Harness) -> None:
    for _cycle in range(15):  # two minutes backed up, two minutes fine, for an hour
        for second in range(0, 240, 10):
            daemon.feed(queues=(queue("incoming", 150 if second < 120 else 10),))
            await daemon.deliver(within=10)
    heads = [t.splitlines()[0] for t in daemon.api.texts()]
    assert heads == [
        "🟠 queue incoming has 150 waiting (limit 100)",
        "✅ Resolved: queue incoming has 150 waiting (limit 100)",
        "🟠 queue incoming has 150 waiting (limit 100)",
        "✅ Resolved: queue incoming has 150 waiting (limit 100)",
        "🟠 queue incoming has 150 waiting (limit 100)",
    ]
    assert "flapping" in daemon.api.texts()[-1].splitlines()[1]
    for _ in range(70):  # it stops: resolved once it has been fine for ten minutes
        daemon.feed(queues=(queue("incoming", 10),))
        await daemon.deliver(within=10)
    assert [t.splitlines()[0] for t in daemon.api.texts()][5:] == [
        "✅ Resolved: queue incoming has 150 waiting (limit 100)"
    ]


async def test_two_sources_on_one_redis_down_together_make_one_message(daemon: Harness) -> None:
    kinds = {"redis main": "redis", "redis locks": "redis"}
    for _ in range(4):
        daemon.feed(kinds=kinds, down=["redis main", "redis locks"])
        await daemon.deliver(within=5)
    texts = daemon.api.texts()
    assert len(texts) == 1
    lines = texts[0].splitlines()
    assert lines[0] == "🔴 redis locks cannot be read: connection refused at 127.0.0.1:6380"
    assert "   • redis main cannot be read: connection refused at 127.0.0.1:6380" in lines
