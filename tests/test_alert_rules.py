"""The rules and the lifecycle, judged on snapshots built from model types: what fires, when, and what it says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from alerting_helpers import (
    Clock,
    check,
    config,
    dispatch,
    health,
    lock,
    process,
    queue,
    snapshot,
)
from opstui.alerts import Alerting
from opstui.check import assess
from opstui.model import ActivityInfo, AlertInfo, HealthInfo, Level, LockState, ProcessInfo, Snapshot


class Judge:
    """Display-only alerting (what the TUI runs while a daemon delivers) on a controllable clock."""

    def __init__(self, tmp_path: Path, **sections: Any) -> None:
        self.clock = Clock()
        self.alerting = Alerting(config(tmp_path, **sections), clock=self.clock)

    def __call__(self, **kwargs: Any) -> dict[str, AlertInfo]:
        out = self.alerting(snapshot(self.clock(), **kwargs))
        return {a.key: a for a in out.alerts}

    def over(self, seconds: float, step: float, **kwargs: Any) -> dict[str, AlertInfo]:
        """The same facts, read every `step` seconds for `seconds`; returns the alerts after the last read."""
        alerts = self(**kwargs)
        for _ in range(int(seconds / step)):
            self.clock.advance(step)
            alerts = self(**kwargs)
        return alerts


def firing(alerts: dict[str, AlertInfo]) -> dict[str, AlertInfo]:
    return {k: a for k, a in alerts.items() if a.state == "firing"}


def test_restart_loop_needs_three_restarts_within_ten_minutes(tmp_path: Path) -> None:
    judge = Judge(tmp_path)
    judge(processes=(process("worker", restarts=283),))  # a long history before we looked is not a loop
    judge.clock.advance(240)
    judge(processes=(process("worker", restarts=284),))
    judge.clock.advance(300)
    assert not firing(judge(processes=(process("worker", restarts=285),)))
    judge.clock.advance(310)  # the first restart is now 10m10s ago: still only two within ten minutes
    assert not firing(judge(processes=(process("worker", restarts=286),)))
    judge.clock.advance(60)
    alerts = firing(judge(processes=(process("worker", restarts=287),)))
    assert alerts["restart_loop:pm2:worker"].summary == "worker is crash-looping: 3 restarts in the last 10m"
    assert alerts["restart_loop:pm2:worker"].level is Level.CRITICAL


def test_a_crash_loop_verdict_counts_only_where_restarts_cannot_be_counted(tmp_path: Path) -> None:
    judge = Judge(tmp_path, alerts={"restart_loop": {"restarts": 10}})
    # With a counter, the configured restarts/within decide, not the source's own verdict.
    assert judge(processes=(process("bot", status="crash-loop", restarts=3),)) == {}
    no_counter = ProcessInfo(
        key="systemd:bot.service", name="bot", manager="systemd", status="crash-loop", source="systemd"
    )
    alerts = judge(processes=(no_counter,))
    assert alerts["restart_loop:systemd:bot.service"].summary == "bot is crash-looping (systemd says crash-loop)"
    once = Alerting(config(tmp_path), once=True)(
        snapshot(judge.clock(), processes=(process("bot", status="crash-loop"),))
    )
    assert [a.summary for a in once.alerts] == ["bot is crash-looping (pm2 says crash-loop)"]


def test_process_down_waits_thirty_seconds_so_a_restart_is_not_an_alert(tmp_path: Path) -> None:
    judge = Judge(tmp_path)
    alerts = judge.over(20, 5, processes=(process("api", status="stopped"),))
    assert alerts["process_down:pm2:api"].state == "pending"
    judge.clock.advance(5)
    assert judge(processes=(process("api"),)) == {}  # it came back: nothing happened
    judge.clock.advance(5)
    alerts = judge.over(30, 5, processes=(process("api", status="errored"),))
    assert alerts["process_down:pm2:api"].state == "firing"
    assert alerts["process_down:pm2:api"].summary == "api is errored"


def test_host_memory_fires_after_two_minutes_over_eighty_percent(tmp_path: Path) -> None:
    judge = Judge(tmp_path)
    assert judge.over(115, 5, host_percent=85.0)["memory:host"].state == "pending"
    judge.clock.advance(5)
    alert = judge(host_percent=86.0)["memory:host"]
    assert (alert.state, alert.level) == ("firing", Level.WARNING)
    assert alert.summary == "host memory at 86% (limit 80%)"
    judge.clock.advance(5)
    alert = judge(host_percent=97.0)["memory:host"]
    assert (alert.level, alert.summary) == (Level.CRITICAL, "host memory at 97% (limit 95%)")


def test_per_process_memory_limits(tmp_path: Path) -> None:
    judge = Judge(tmp_path, alerts={"memory": {"for": "0s", "process": "1GiB", "processes": {"api": "256MiB"}}})
    big = 512 * 1024**2
    alerts = judge(processes=(process("api", rss_bytes=big), process("worker", rss_bytes=big)))
    assert set(firing(alerts)) == {"memory:pm2:api"}
    assert alerts["memory:pm2:api"].summary == "api uses 512.0 MiB (limit 256.0 MiB)"


def test_queue_depth_uses_the_queues_own_thresholds_else_the_rules(tmp_path: Path) -> None:
    judge = Judge(tmp_path, alerts={"queue_depth": {"for": "0s"}})
    alerts = judge(
        queues=(
            queue("incoming", 162),
            queue("bulk", 162, warn=500, crit=5000),
            queue("retry", 1200),
        )
    )
    assert alerts["queue_depth:redis main/incoming"].level is Level.WARNING
    assert alerts["queue_depth:redis main/incoming"].summary == "queue incoming has 162 waiting (limit 100)"
    assert "queue_depth:redis main/bulk" not in alerts
    assert alerts["queue_depth:redis main/retry"].level is Level.CRITICAL


def test_a_queue_growing_for_ten_minutes_fires_but_a_burst_does_not(tmp_path: Path) -> None:
    judge = Judge(tmp_path)
    assert "queue_growing:redis main/q" not in firing(judge.over(300, 30, queues=(queue("q", 50, growth_per_min=3.0),)))
    judge.clock.advance(30)
    judge(queues=(queue("q", 20, growth_per_min=-6.0),))  # drained a bit: the ten minutes start again
    assert not firing(judge.over(570, 30, queues=(queue("q", 60, growth_per_min=3.0),)))
    alerts = judge.over(30, 30, queues=(queue("q", 62, growth_per_min=3.0),))
    assert alerts["queue_growing:redis main/q"].summary == "queue q keeps growing: +3/min, 62 waiting"


def test_no_activity_for_longer_than_its_max_age(tmp_path: Path) -> None:
    judge = Judge(tmp_path)
    now = judge.clock()
    recent = ActivityInfo(key="a:msg", name="messages", source="redis main", last_at=now - 60, max_age=600)
    quiet = ActivityInfo(key="a:sync", name="crm sync", source="redis main", last_at=now - 3600)
    alerts = judge(activity=(recent, quiet))
    assert set(alerts) == {"inactive:a:sync"}
    assert alerts["inactive:a:sync"].summary == "crm sync: nothing handled for 1h (limit 15m)"


@pytest.mark.parametrize(
    ("state", "expect_held", "level", "summary"),
    [
        (LockState.STALE, [], Level.WARNING, "lock daily_batch is stale: held by vps-1"),
        (LockState.UNEXPECTED, [], Level.CRITICAL, "lock daily_batch is held by vps-1, expected ?"),
        (LockState.FREE, ["daily_*"], Level.WARNING, "lock daily_batch is free but should be held"),
        (LockState.FREE, [], None, None),
        (LockState.HELD, ["daily_*"], None, None),
    ],
)
def test_lock_states(tmp_path: Path, state: LockState, expect_held: list[str], level: Any, summary: Any) -> None:
    judge = Judge(tmp_path, alerts={"lock": {"for": "0s", "expect_held": expect_held}})
    alerts = judge(locks=(lock("daily_batch", state),))
    alert = alerts.get("lock:postgres main/daily_batch")
    assert (alert.level, alert.summary) == (level, summary) if alert else level is None


def test_dispatch_mismatch_is_judged_once_the_run_settles(tmp_path: Path) -> None:
    judge = Judge(tmp_path)
    now = judge.clock()
    assert judge(dispatch=(dispatch(120, 100, 0, last_event_at=now - 5),)) == {}  # still sending
    judge.clock.advance(60)
    alert = judge(dispatch=(dispatch(120, 100, 0, last_event_at=now - 5),))["dispatch:dispatch:report"]
    assert (alert.state, alert.level) == ("firing", Level.CRITICAL)
    assert alert.summary == "report: processed 120, sent 100, failed 0 (20 not delivered)"
    judge.clock.advance(5)
    alert = judge(dispatch=(dispatch(120, 118, 2, last_event_at=now),))["dispatch:dispatch:report"]
    assert alert.level is Level.WARNING


def test_health_needs_three_consecutive_failed_checks_not_three_snapshots(tmp_path: Path) -> None:
    judge = Judge(tmp_path)
    failing = (health("api", ok=False),)
    out = judge.alerting(snapshot(judge.clock(), health=failing))
    # The same read published again (another source's tick) is not another failed check.
    for _ in range(5):
        out = judge.alerting(out.replace(taken_at=out.taken_at + 1))
    assert [a.state for a in out.alerts] == ["pending"]
    judge.clock.advance(10)
    judge(health=failing)
    judge.clock.advance(10)
    assert judge(health=failing)["health:http:api"].state == "firing"


def test_backup_and_env_checks_carry_their_own_level(tmp_path: Path) -> None:
    judge = Judge(tmp_path)
    alerts = judge(
        checks=(
            check("db backup", "backup", Level.CRITICAL, "newest backup is 3d old (max 1d)"),
            check("BOT_TOKEN", "env", Level.WARNING, "required environment variable is missing"),
            check("disk", "other", Level.OK, "fine"),
        )
    )
    assert alerts["backup:backup:db backup"].summary == "db backup: newest backup is 3d old (max 1d)"
    assert alerts["backup:backup:db backup"].level is Level.CRITICAL
    assert alerts["env:env:BOT_TOKEN"].level is Level.WARNING
    assert len(alerts) == 2


def test_a_source_that_fails_twice_fires_and_its_stale_facts_hold_their_alerts(tmp_path: Path) -> None:
    judge = Judge(tmp_path, alerts={"process_down": {"for": "0s"}})
    assert judge(processes=(process("api", status="stopped"),))["process_down:pm2:api"].state == "firing"
    judge.clock.advance(5)
    alerts = judge(processes=(process("api", status="stopped"),), down=["pm2"])
    assert alerts["source_down:pm2"].state == "pending"
    judge.clock.advance(5)
    # PM2 cannot be read: the engine still shows the last good facts, which neither resolve nor re-judge.
    alerts = judge(processes=(process("api"),), down=["pm2"])
    assert alerts["source_down:pm2"].state == "firing"
    assert alerts["source_down:pm2"].summary == "pm2 cannot be read: connection refused at 127.0.0.1:6380"
    assert alerts["process_down:pm2:api"].state == "firing"


def test_resolves_only_after_two_good_checks(tmp_path: Path) -> None:
    judge = Judge(tmp_path, alerts={"health": {"failures": 1}})
    judge(health=(health("api", ok=False),))
    judge.clock.advance(10)
    assert judge(health=(health("api", ok=True),))["health:http:api"].state == "firing"
    judge.clock.advance(10)
    alert = judge(health=(health("api", ok=True),))["health:http:api"]
    assert alert.state == "resolved" and alert.since == judge.clock()


def test_a_flapping_check_is_held_firing_instead_of_toggling(tmp_path: Path) -> None:
    judge = Judge(tmp_path)  # health needs 3 failures in a row, which a flapping endpoint never gives
    states = []
    for i in range(14):
        judge.clock.advance(10)
        alert = judge(health=(health("api", ok=i % 2 == 1),)).get("health:http:api")
        states.append(alert.state if alert else "ok")
    assert states[-1] == "firing" and "resolved" not in states
    assert judge(health=(health("api", ok=False),))["health:http:api"].flapping
    good_checks = 0
    while judge(health=(health("api", ok=True),))["health:http:api"].state == "firing":
        judge.clock.advance(10)
        good_checks += 1
    # Held until its condition has been good for flap_quiet (10 minutes of checks every 10 s).
    assert good_checks == 60


def test_ignore_and_disable(tmp_path: Path) -> None:
    judge = Judge(
        tmp_path,
        alerts={"process_down": {"for": "0s", "ignore": ["cron-*"]}, "queue_depth": {"enabled": False}},
    )
    alerts = judge(
        processes=(process("cron-nightly", status="stopped"), process("api", status="stopped")),
        queues=(queue("incoming", 5000),),
    )
    assert set(alerts) == {"process_down:pm2:api"}


def test_check_judges_once_with_no_waiting(tmp_path: Path) -> None:
    alerting = Alerting(config(tmp_path), once=True)
    out: Snapshot = alerting(
        snapshot(
            Clock()(),
            processes=(process("api", status="stopped"),),
            health=(health("api", ok=False),),
            host_percent=85.0,
        )
    )
    level, reasons = assess(out)
    assert level is Level.CRITICAL
    assert sorted(reasons) == ["api is stopped", "health api failing: failing"]
    assert {a.state for a in out.alerts} == {"firing"}


def test_secrets_in_facts_never_reach_an_alert(tmp_path: Path) -> None:
    judge = Judge(tmp_path, alerts={"health": {"failures": 1}})
    leaky = HealthInfo(
        key="http:api",
        name="api",
        url="https://monitor:hunter2-secret@api.example.com/health",
        ok=False,
        source="http",
        error="GET failed: password=hunter2-secret rejected",
    )
    alert = judge(health=(leaky,))["health:http:api"]
    assert "hunter2" not in f"{alert.summary} {alert.detail}"
    assert alert.detail == "https://monitor:***@api.example.com/health"


def test_items_that_cannot_be_read_are_warnings_not_made_up_verdicts() -> None:
    import time as _time

    from opstui.alerts import Alerting
    from opstui.check import assess
    from opstui.config import Config
    from opstui.model import ActivityInfo, DispatchInfo, LockInfo, LockState, QueueInfo, Snapshot

    snapshot = Snapshot(
        taken_at=_time.time(),
        instance="t",
        sources={},
        queues=(QueueInfo(key="r/q", name="jobs", kind="list", depth=None, source="r", error="jobs is a string"),),
        locks=(LockInfo(key="p/l", name="batch", state=LockState.UNKNOWN, source="p", error="no column instance"),),
        dispatch=(DispatchInfo(key="d", name="report", source="d", processed=0, sent=0, failed=0, error="bad SQL"),),
        activity=(ActivityInfo(key="a", name="messages", source="r", last_at=None, error="SCAN forbidden"),),
    )
    level, reasons = assess(Alerting(Config(), once=True)(snapshot))
    assert level is Level.WARNING
    assert sorted(reasons) == [
        "lock batch cannot be read: no column instance",
        "messages cannot be read: SCAN forbidden",
        "queue jobs cannot be read: jobs is a string",
        "report cannot be read: bad SQL",
    ]
