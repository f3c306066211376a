"""The daily report: its figures over 24 hours, its schedule in a real timezone, and the runs it missed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from alerting_helpers import START, Clock, Harness, config, dispatch, lock, process, queue, snapshot
from opstui.engine import History
from opstui.model import LockState
from opstui.notify.render import to_plain
from opstui.report import LAST_RUN_KEY, DailyReport, SampleRecorder, build_report, scheduled_times
from opstui.state import StateStore
from telegram_api import FakeBotAPI

ALMATY = ZoneInfo("Asia/Almaty")


def record_day(store: StateStore, clock: Clock) -> None:
    """24 hours of per-minute samples as the daemon records them: the worker restarts, the queue backs up."""
    recorder = SampleRecorder(store)
    history = History()
    restarts = 280
    for minute in range(24 * 60):
        t = clock()
        if 600 <= minute < 630:
            restarts += 1
        if minute == 700:
            restarts = 0  # pm2 reset: the counter starts again
        if 701 <= minute < 703:
            restarts += 1
        depth = 162 if 900 <= minute < 960 else 3
        memory = 91.0 if minute == 1000 else 40.0
        for key, value in (
            ("process_restarts_total:pm2:worker", restarts),
            ("queue_depth:redis main/incoming", depth),
            ("host_memory_used_percent:host", memory),
            ("process_rss_bytes:pm2:worker", 300 * 1024**2),
        ):
            history.record(key, t, value)
        recorder(snapshot(t).replace(series=history.frozen()))
        clock.advance(60)
    recorder.flush()


def test_the_report_says_what_the_day_looked_like(tmp_path: Path) -> None:
    clock = Clock(START - 86400)
    store = StateStore.in_dir(tmp_path)
    record_day(store, clock)
    with store.transaction() as db:
        for at, event in ((START - 5000, "fired"), (START - 4000, "resolved"), (START - 100, "fired")):
            db.execute(
                "INSERT INTO alert_log (at, key, rule, event, level, summary, notified) VALUES (?, ?, ?, ?, ?, ?, 1)",
                (at, "restart_loop:pm2:worker", "restart_loop", event, "critical", "worker is crash-looping"),
            )
    now = clock()
    snap = snapshot(
        now,
        processes=(process("worker", status="online", restarts=2), process("api", restarts=0)),
        queues=(queue("incoming", 7),),
        locks=(lock("daily_batch", LockState.HELD),),
        dispatch=(dispatch(120, 118, 0, last_event_at=now - 600),),
        host_percent=41.0,
    )
    text = to_plain("\n".join(build_report(snap, store, tz=ALMATY, now=now)))
    assert text.splitlines()[:2] == ["📋 Daily report · demo", "2027-01-15 13:00 +05, the last 24 hours"]
    assert "• worker: 32 (now online, 2 in total)" in text  # 30 + 2 after the reset
    assert "• api: no data (now online, 0 in total)" in text
    assert "• incoming: 7 / 162" in text
    assert "• host: 91% at 05:40 (now 41%)" in text
    assert "• worker: 300.0 MiB" in text
    assert "• daily_batch: held by vps-1 (held)" in text
    assert "• report: processed 120, sent 118, failed 0 ⚠️ mismatch" in text
    assert "fired 2, resolved 1, firing now 0" in text
    store.close()


def test_scheduled_times_are_one_per_local_day_across_dst(tmp_path: Path) -> None:
    cfg = config(tmp_path, report={"time": "02:30", "timezone": "Europe/Berlin"})
    berlin = ZoneInfo("Europe/Berlin")
    spring = datetime(2027, 3, 27, 12, tzinfo=berlin).timestamp()
    times = scheduled_times(cfg, spring, spring + 3 * 86400)
    local = [datetime.fromtimestamp(t, UTC).astimezone(berlin).strftime("%m-%d %H:%M") for t in times]
    assert local == ["03-28 03:30", "03-29 02:30", "03-30 02:30"]  # 02:30 does not exist on the 28th
    autumn = datetime(2027, 10, 30, 12, tzinfo=berlin).timestamp()
    times = scheduled_times(cfg, autumn, autumn + 3 * 86400)
    assert len(times) == 3  # 02:30 happens twice on the 31st; the report goes once


@pytest.fixture
def api(clock: Clock) -> object:
    with FakeBotAPI(clock=clock) as fake:
        yield fake


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def test_a_missed_daily_report_is_reported(tmp_path: Path, api: FakeBotAPI, clock: Clock) -> None:
    harness = Harness.new(tmp_path, api, clock, report={"time": "08:00", "timezone": "Asia/Almaty"})
    report = DailyReport(harness.config, harness.store, lambda: snapshot(clock()), clock=clock)
    assert report.catch_up() is False  # first start ever: nothing can have been missed
    assert report.catch_up() is False

    clock.advance(3 * 86400)  # the daemon was down for three days
    assert report.catch_up() is True
    await harness.deliver(within=5)
    texts = api.texts()
    assert len(texts) == 1
    assert (
        "⚠️ 3 daily reports were missed (2027-01-16 to 2027-01-18) while opstui's daemon was not running. "
        "Here is the latest, late." in texts[0]
    )
    assert report.catch_up() is False  # said once, not at every start

    clock.advance(86400)
    report.run()  # the cron job at 08:00
    report.run()  # a DST fall-back fires the cron trigger twice: the same local day, the same report
    await harness.deliver(within=5)
    assert len(api.texts()) == 2 and "missed" not in api.texts()[1]
    assert float(harness.store.get_meta(LAST_RUN_KEY) or 0) <= clock()
    await harness.close()


def test_the_report_runs_on_a_cron_trigger_in_its_timezone(tmp_path: Path) -> None:
    from apscheduler.schedulers.background import BackgroundScheduler

    cfg = config(tmp_path, report={"time": "08:00", "timezone": "Asia/Almaty"})
    store = StateStore.in_dir(tmp_path)
    scheduler = BackgroundScheduler(timezone="UTC")
    DailyReport(cfg, store, lambda: snapshot(START)).schedule(scheduler)
    job = scheduler.get_job("daily-report")
    fire = job.trigger.get_next_fire_time(None, datetime.fromtimestamp(START, UTC))
    assert fire.astimezone(UTC).strftime("%Y-%m-%d %H:%M") == "2027-01-16 03:00"  # 08:00 in Almaty
    store.close()
