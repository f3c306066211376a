"""The dashboard as a person uses it: keys, panes, freshness, pausing, the command guard, themes, the terminal."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import MappingProxyType

import pytest
from textual.message import Message

from opstui.config import Config, load_config
from opstui.demo.servers import EmbeddedPostgres
from opstui.errors import ConfigError
from opstui.model import ActivityInfo, AlertInfo, Level, LockInfo, LockState, ProcessInfo, QueueInfo, SourceStatus
from opstui.tui.app import CommandOutcome, OpsApp
from opstui.tui.cells import STALE, KeyedTable, Lines, trend
from opstui.tui.commands import Command
from opstui.tui.panes.locks import expires_in
from opstui.tui.screens import ConfirmScreen, HelpScreen
from opstui.tui.themes import choose_theme, load_theme, load_themes, shipped_themes_dir
from tui_sample import NOW, ScriptedFeed, sample_app, sample_config, sample_snapshot

SMALL = (80, 24)
LARGE = (160, 48)


def table(app: OpsApp, pane_id: str) -> KeyedTable:
    return app.query_one(f"#table-{pane_id}", KeyedTable)


def feed_of(app: OpsApp) -> ScriptedFeed:
    assert isinstance(app.feed, ScriptedFeed)
    return app.feed


def visible_panes(app: OpsApp) -> list[str]:
    return [pane.pane_id for pane in app.panes if pane.region.area > 0]


async def test_keys_move_between_panes_without_a_mouse_at_80x24() -> None:
    app = sample_app()
    async with app.run_test(size=SMALL) as pilot:
        await pilot.pause()
        assert visible_panes(app) == ["processes"]
        assert app.focused is table(app, "processes")
        await pilot.press("tab")
        assert visible_panes(app) == ["queues"]
        assert app.focused is table(app, "queues")
        await pilot.press("5")
        assert visible_panes(app) == ["dispatch"]
        await pilot.press("shift+tab")
        assert visible_panes(app) == ["locks"]
        await pilot.press("down")
        assert table(app, "locks").cursor_key == "postgres/crm_sync"


async def test_every_pane_is_reachable_at_80x24_and_all_show_at_160x48() -> None:
    app = sample_app()
    async with app.run_test(size=SMALL) as pilot:
        await pilot.pause()
        for number, pane in enumerate(app.panes, start=1):
            await pilot.press(str(number))
            assert visible_panes(app) == [pane.pane_id]
            assert pane.region.height >= 10, pane.pane_id
        await pilot.resize_terminal(*LARGE)
        await pilot.pause()
        assert visible_panes(app) == [pane.pane_id for pane in app.panes]
        await pilot.press("1", "tab")
        assert app.focused is table(app, "queues")


async def test_help_opens_with_every_command_and_its_key() -> None:
    app = sample_app()
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = app.screen.query_one("#help-text", Lines).plain
        assert "p           Pause or resume" in text
        assert "tab         Next pane" in text
        assert "Theme: opstui-light" in text
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_pause_stops_updates_and_resume_shows_the_latest() -> None:
    app = sample_app(refresh="200ms")
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("2")
        assert table(app, "queues").column_text("depth")[0] == "✖ 162"
        await pilot.press("p")
        snapshot = feed_of(app).snapshot
        fuller = dataclasses.replace(snapshot.queues[0], depth=170)
        feed_of(app).change(queues=(fuller, *snapshot.queues[1:]))
        await pilot.pause(0.6)
        assert table(app, "queues").column_text("depth")[0] == "✖ 162"
        assert "PAUSED" in app.dashboard.header.right.plain
        await pilot.press("p")
        assert table(app, "queues").column_text("depth")[0] == "✖ 170"
        assert "PAUSED" not in app.dashboard.header.right.plain


async def test_a_queue_whose_depth_cannot_be_read_shows_a_question_mark_and_why() -> None:
    snapshot = sample_snapshot()
    wrong = QueueInfo(
        key="postgres/wrongtype",
        name="wrongtype",
        kind="list",
        depth=None,
        source="postgres",
        error="wrongtype is a hash, not a list",
    )
    app = sample_app(dataclasses.replace(snapshot, queues=(wrong,)))
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("2")
        depth = table(app, "queues").column_text("depth")[0]
        assert depth.endswith(" ?") and "None" not in depth
        assert table(app, "queues").column_text("parts") == ["wrongtype is a hash, not a list"]


async def test_a_failing_source_shows_its_error_and_the_age_of_its_last_value() -> None:
    app = sample_app()
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("2")
        queues = app.pane("queues")
        assert queues.banner.plain == (
            "✖ redis main: connection refused at 127.0.0.1:6380 · last good value 2m ago, shown dimmed"
        )
        assert queues.border_subtitle == "1 of 2 sources failing"
        # The rows that source gave are drawn in the stale colour; the SQL queue's source is fine.
        styles = {key: cells[0][1] for key, cells in table(app, "queues")._cells.items()}
        assert styles["redis main/queue:incoming"] == STALE
        assert styles["postgres/failed_amocrm_sync"] != STALE


async def test_a_source_that_never_worked_says_so_instead_of_an_age() -> None:
    snapshot = sample_snapshot()
    sources = dict(snapshot.sources)
    sources["pm2"] = SourceStatus(
        name="pm2",
        kind="pm2",
        ok=False,
        checked_at=NOW - 1,
        error="pm2 rpc.sock: no such file",
        last_ok_at=None,
        provides=frozenset({"processes", "logs"}),
    )
    app = sample_app(dataclasses.replace(snapshot, sources=MappingProxyType(sources), processes=(), logs=()))
    async with app.run_test(size=SMALL) as pilot:
        await pilot.pause()
        banner = app.pane("processes").banner.plain
        assert banner == "✖ pm2: pm2 rpc.sock: no such file · no good value yet"
        assert "undefined" not in banner and "never ago" not in banner


async def test_a_database_that_never_let_us_in_says_why_where_its_lock_would_be(
    postgres_server: EmbeddedPostgres, tmp_path: Path
) -> None:
    """Not "no lock is watched: add a lock to the config" while the config is right and the password wrong."""
    postgres_server.psql(
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tui_locked_out') THEN "
        "CREATE ROLE tui_locked_out LOGIN PASSWORD 'right-horse-battery'; END IF; END $$"
    )
    hba = postgres_server.data / "pg_hba.conf"
    if "tui_locked_out" not in hba.read_text():
        hba.write_text("host all tui_locked_out 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        postgres_server.psql("SELECT pg_reload_conf()")
    dsn = f"postgresql://tui_locked_out:wrong-staple@127.0.0.1:{postgres_server.port}/postgres"
    config = Config.model_validate(
        {
            "general": {"instance": "bot-vps-1", "timezone": "UTC", "state_dir": str(tmp_path)},
            "host": {"enabled": False},
            "postgres": [{"name": "crm", "dsn": dsn, "locks": [{"name": "daily_batch", "key": "daily_batch"}]}],
        }
    )
    app = OpsApp(config, host="vps-1", presence=lambda: None, themes=load_themes([shipped_themes_dir()]))
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("4")
        locks = app.pane("locks")
        for _ in range(100):  # the first read happens as the engine starts; give it up to 10 s
            if locks.banner.plain.startswith("✖"):
                break
            await pilot.pause(0.1)
        assert locks.banner.plain == (
            f"✖ postgres crm: password authentication failed for user tui_locked_out at 127.0.0.1:"
            f"{postgres_server.port} · no good value yet"
        )
        assert "wrong-staple" not in locks.banner.plain
        await pilot.press("2")  # this database has no queues configured: that pane still says so
        assert app.pane("queues").banner.plain.startswith("No queues are watched")


async def test_the_cursor_stays_on_its_row_when_rows_are_added_and_removed() -> None:
    app = sample_app()
    async with app.run_test(size=SMALL) as pilot:
        await pilot.pause()
        processes = table(app, "processes")
        await pilot.press("down")  # from the crash-looping worker, where it starts, to batch
        assert processes.cursor_key == "pm2:batch"
        old = feed_of(app).snapshot.processes
        newcomer = ProcessInfo(key="pm2:aaa-new", name="aaa-new", manager="pm2", status="online", source="pm2")
        feed_of(app).change(processes=(newcomer, old[0], old[2], old[3]))  # worker gone, one added first
        await pilot.pause()
        app.render_now()
        assert [row.key.value for row in processes.ordered_rows] == [
            "pm2:aaa-new",
            "pm2:api",
            "pm2:batch",
            "systemd:crm-sync.service",
        ]
        assert processes.cursor_key == "pm2:batch"


async def test_two_items_with_one_key_show_once_instead_of_breaking_the_table() -> None:
    snapshot = sample_snapshot()
    app = sample_app(dataclasses.replace(snapshot, processes=(*snapshot.processes, snapshot.processes[0])))
    async with app.run_test(size=SMALL) as pilot:
        await pilot.pause()
        assert table(app, "processes").column_text("name") == ["api", "⟳ worker", "batch", "crm-sync.service"]


async def test_freshness_says_just_now_then_counts_in_tens_of_seconds_then_minutes() -> None:
    now = [NOW]
    app = sample_app()
    app.clock = lambda: now[0]
    async with app.run_test(size=LARGE) as pilot:
        await pilot.pause()
        processes = app.pane("processes")
        assert processes.border_subtitle == "read just now"  # pm2 read 0.4 s ago
        now[0] += 25
        app.render_now()
        assert processes.border_subtitle == "read 20s ago"
        now[0] += 60
        app.render_now()
        assert processes.border_subtitle == "read 1m ago"


async def test_the_dashboard_starts_on_the_process_in_the_worst_state_and_shows_its_errors() -> None:
    app = sample_app()
    async with app.run_test(size=SMALL) as pilot:
        await pilot.pause()
        assert table(app, "processes").cursor_key == "pm2:worker"
        await pilot.press("7")
        logs = app.pane("activity").log_lines.plain  # type: ignore[attr-defined]
        assert "ECONNREFUSED 127.0.0.1:6380" in logs
        assert "whatsapp session closed" not in logs  # that is the api's log
        await pilot.press("1", "up", "7")
        assert "whatsapp session closed" in app.pane("activity").log_lines.plain  # type: ignore[attr-defined]


async def test_the_cursor_goes_to_a_process_that_goes_bad_later_unless_the_person_moved_it() -> None:
    snapshot = sample_snapshot()
    fine = tuple(dataclasses.replace(p, status="online", restarts_last_hour=0) for p in snapshot.processes)
    app = sample_app(dataclasses.replace(snapshot, processes=fine), refresh="200ms")
    async with app.run_test(size=SMALL) as pilot:
        await pilot.pause()
        processes = table(app, "processes")
        first = processes.cursor_key
        worker = next(p for p in fine if p.key == "pm2:worker")
        assert first != worker.key
        feed_of(app).change(
            processes=tuple(dataclasses.replace(p, status="errored") if p is worker else p for p in fine)
        )
        await pilot.pause(0.6)
        assert processes.cursor_key == "pm2:worker", "trouble that starts later is where the cursor goes"

    app = sample_app(dataclasses.replace(snapshot, processes=fine), refresh="200ms")
    async with app.run_test(size=SMALL) as pilot:
        await pilot.pause()
        await pilot.press("down", "down")
        moved = table(app, "processes").cursor_key
        assert moved not in (first, worker.key)
        feed_of(app).change(
            processes=tuple(dataclasses.replace(p, status="errored") if p is worker else p for p in fine)
        )
        await pilot.pause(0.6)
        assert table(app, "processes").cursor_key == moved, "a cursor the person moved stays"


async def test_a_report_run_still_sending_is_not_called_a_mismatch_until_it_settles() -> None:
    snapshot = sample_snapshot()
    sending = dataclasses.replace(snapshot.dispatch[0], processed=8, sent=4, failed=0, last_event_at=NOW - 15)
    app = sample_app(dataclasses.replace(snapshot, dispatch=(sending,)), refresh="200ms")
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("5")
        assert table(app, "dispatch").column_text("verdict") == ["… sending"]
        assert app.pane_states()["dispatch"].level is Level.OK
        assert "unaccounted" not in app.pane("dispatch").note.plain
        # The alert rules' `settle` (60 s) after its last line, the run is judged.
        feed_of(app).change(dispatch=(dataclasses.replace(sending, last_event_at=NOW - 61),))
        await pilot.pause(0.6)
        assert table(app, "dispatch").column_text("verdict") == ["✖ MISMATCH"]
        assert app.pane_states()["dispatch"].level is Level.CRITICAL
        assert "4 unaccounted for" in app.pane("dispatch").note.plain


async def test_activity_is_judged_by_the_alert_rule_with_its_default_limit() -> None:
    snapshot = sample_snapshot()
    unlimited = ActivityInfo(key="orders", name="last order", source="postgres", last_at=NOW - 1200)
    unreadable = ActivityInfo(
        key="sync", name="last sync", source="postgres", last_at=None, error="column synced_at does not exist"
    )
    app = sample_app(dataclasses.replace(snapshot, activity=(unlimited, unreadable)))
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("7")
        activity = table(app, "activity")
        # No max_age of its own: alerts.inactive.max_age (15m) applies, here and in the alert.
        assert activity.column_text("limit") == ["15m", "15m"]
        assert activity.column_text("last") == ["▲ 20m ago", "▲ never"]
        assert activity.column_text("detail")[1] == "column synced_at does not exist"
        assert app.pane_states()["activity"].level is Level.WARNING


async def test_a_process_without_an_error_log_shows_every_log_and_says_how_to_pick_one() -> None:
    app = sample_app()
    async with app.run_test(size=SMALL) as pilot:
        await pilot.pause()
        processes = table(app, "processes")
        processes.move_cursor(row=processes.get_row_index("pm2:batch"))
        await pilot.press("7")
        pane = app.pane("activity")
        title = pane.log_title.plain  # type: ignore[attr-defined]
        assert title == "Latest errors of every process  (none known for batch; pick one in Processes)"
        logs = pane.log_lines.plain  # type: ignore[attr-defined]
        assert "ECONNREFUSED 127.0.0.1:6380" in logs and "whatsapp session closed" in logs


async def test_telegram_retrying_is_said_in_the_health_pane_not_just_ok() -> None:
    from opstui.notify.sender import DeliveryStatus, delivery_check

    failing = DeliveryStatus(ok=False, problem="cannot reach 127.0.0.1:9", since=NOW - 30)
    check = delivery_check(failing, 3, NOW - 30, now=NOW)
    assert check is not None and check.level is Level.OK  # within the grace period: no alert yet
    app = sample_app(dataclasses.replace(sample_snapshot(), checks=(check,)))
    async with app.run_test(size=LARGE) as pilot:
        await pilot.pause()
        health = table(app, "health")
        assert (
            health.column_text("detail")[-1] == "Telegram retrying: cannot reach 127.0.0.1:9; 3 notifications waiting"
        )


async def test_the_alert_under_the_cursor_is_shown_in_full_below_the_table() -> None:
    snapshot = sample_snapshot()
    outage = dataclasses.replace(snapshot.alerts[0], key="source:redis main", summary="redis main is down")
    long = AlertInfo(
        key="queue:incoming",
        rule="queue_depth",
        level=Level.CRITICAL,
        state="silenced",
        summary="queue incoming has 162 waiting (limit 150), the oldest job waiting for 14 minutes",
        since=NOW - 240,
        cause="source:redis main",
        muted_by="silence 3 until 04:00 (deploy)",
    )
    app = sample_app(dataclasses.replace(snapshot, alerts=(outage, long)))
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("8")
        alerts = app.pane("alerts")
        assert alerts.selected is outage
        await pilot.press("down")
        assert alerts.selected is long
        # The table's Alert column is cut at 80 columns; below it, the whole alert wraps.
        assert alerts.chosen.plain.splitlines() == [  # type: ignore[attr-defined]
            f"… {long.summary}",
            "folded under: redis main is down",
            "muted by silence 3 until 04:00 (deploy)",
        ]


async def test_text_from_systems_is_shown_literally_and_cannot_reach_the_terminal() -> None:
    app = sample_app()
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("7")
        logs = app.pane("activity").log_lines.plain  # type: ignore[attr-defined]
        assert "[error] queue consumer died; [red]not markup[/red] [/oops]" in logs
        assert "\x1b" not in logs and "\x07" not in logs
        assert "rejected �]0;pwned�by the CRM" in logs


async def test_nothing_is_drawn_while_a_dialog_covers_the_dashboard_or_a_pane_is_hidden() -> None:
    app = sample_app(refresh="200ms")
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("2", "1")
        snapshot = feed_of(app).snapshot
        fuller = dataclasses.replace(snapshot.queues[0], depth=170)
        feed_of(app).change(queues=(fuller, *snapshot.queues[1:]))
        await pilot.pause(0.6)
        # The queues pane is hidden behind the processes tab: not drawn until it is shown again.
        assert table(app, "queues").column_text("depth")[0] == "✖ 162"
        await pilot.press("question_mark")
        await pilot.press("escape", "2")
        assert table(app, "queues").column_text("depth")[0] == "✖ 170"
        fullest = dataclasses.replace(snapshot.queues[0], depth=180)
        await pilot.press("question_mark")
        feed_of(app).change(queues=(fullest, *snapshot.queues[1:]))
        await pilot.pause(0.6)
        assert table(app, "queues").column_text("depth")[0] == "✖ 170"
        await pilot.press("escape")
        assert table(app, "queues").column_text("depth")[0] == "✖ 180"


async def test_the_header_says_who_where_when_the_daemon_and_what_is_firing() -> None:
    app = sample_app()
    async with app.run_test(size=LARGE) as pilot:
        await pilot.pause()
        header = app.dashboard.header
        assert header.left.plain == ("bot-vps-1 @ vps-1  daemon: leader  ✖ 2 alerts firing  ✖ 1 source failing")
        assert header.right.plain == "every 2s  03:04:05"


async def test_the_lock_counts_down_as_the_clock_moves() -> None:
    now = [NOW]
    app = sample_app()
    app.clock = lambda: now[0]
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("4")
        assert table(app, "locks").column_text("expires")[0] == "4m10s"
        now[0] += 15
        app.render_now()
        assert table(app, "locks").column_text("expires")[0] == "3m55s"
    lock = LockInfo(key="k", name="k", state=LockState.STALE, source="s", expires_at=NOW - 125)
    assert expires_in(lock, NOW) == "expired 2m ago"


def test_trends_start_from_zero_so_a_stuck_queue_looks_full() -> None:
    assert trend([162.0] * 5, 5) == "█████"
    assert trend([0.0, 50.0, 100.0], 3, top=100.0) == "▁▅█"
    assert trend([1.0, 9.0, 2.0, 3.0], 2) == "█▃"  # the worst point of each column
    assert trend([], 5) == ""


# ------------------------------------------------------------------------------------------------- commands


def restart_command(calls: list[object]) -> Command:
    return Command(
        "restart",
        "Restart process",
        "Restart the process through its manager",
        lambda context: calls.append(context.item),
        key="R",
        group="Actions",
        mutating=True,
        scope="processes",
        describe=lambda context: f"pm2 restart {context.item.name}",
    )


async def test_a_mutating_command_asks_first_and_shows_what_will_run() -> None:
    calls: list[object] = []
    outcomes: list[str] = []

    def hook(message: Message) -> None:
        if isinstance(message, CommandOutcome):
            outcomes.append(message.outcome)

    app = sample_app(commands=(restart_command(calls),))  # how the recovery actions plug in
    async with app.run_test(size=SMALL, message_hook=hook) as pilot:
        await pilot.pause()
        await pilot.press("R")
        assert isinstance(app.screen, ConfirmScreen)
        assert app.screen.detail == "pm2 restart worker"
        await pilot.press("n")
        assert calls == [] and outcomes == ["cancelled"]
        await pilot.press("R", "y")
        await pilot.pause()
        assert [p.name for p in calls] == ["worker"]  # type: ignore[attr-defined]
        assert outcomes == ["cancelled", "ran"]


async def test_read_only_mode_refuses_a_mutating_command_in_the_one_guard() -> None:
    calls: list[object] = []
    outcomes: list[str] = []

    def hook(message: Message) -> None:
        if isinstance(message, CommandOutcome):
            outcomes.append(message.outcome)

    app = sample_app(commands=(restart_command(calls),), read_only=True)
    async with app.run_test(size=SMALL, message_hook=hook) as pilot:
        await pilot.pause()
        await pilot.press("R")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        app.run_command("restart")  # the palette's way in passes the same guard
        await pilot.pause()
        assert calls == [] and outcomes == ["refused", "refused"]
        assert "read-only" in list(app._notifications)[-1].message


async def test_a_row_command_is_only_offered_on_its_pane() -> None:
    app = sample_app(commands=(restart_command([]),))
    async with app.run_test(size=SMALL) as pilot:
        await pilot.pause()
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Restart process" in titles
        await pilot.press("2")
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Restart process" not in titles
        assert {"Pause or resume", "Refresh every 5s", "Theme: opstui-light", "Go to Lock"} <= set(titles)


async def test_the_palette_changes_the_refresh_interval() -> None:
    app = sample_app()
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("ctrl+p")
        await pilot.press(*"refresh every 10s")
        await pilot.press("enter")
        await pilot.pause()
        assert app.refresh_every == 10.0
        assert app.dashboard.header.right.plain == "03:04:05"  # narrow: the interval is left out
        await pilot.press("minus")
        assert app.refresh_every == 30.0


async def test_keys_are_remapped_by_command_id_from_the_config() -> None:
    app = sample_app(keys={"pause": "space"})
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("p")
        assert app.paused_at is None
        await pilot.press("space")
        assert app.paused_at is not None


@pytest.mark.parametrize(
    ("keys", "problem"),
    [
        ({"pasue": "x"}, "tui.keys.pasue: no command has the id 'pasue' (did you mean 'pause'?)"),
        ({"pause": "q"}, "tui.keys.pause: 'q' is also the key of 'quit'; give one of them another key"),
        ({"pause": "ctrl+banana"}, "tui.keys.pause: 'ctrl+banana' is not a key"),
        ({"help": "ctrl+q"}, "tui.keys.help: 'ctrl+q' is quit (Textual's own) and cannot be remapped"),
    ],
)
def test_a_wrong_key_in_the_config_names_the_key_and_the_problem(keys: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        sample_app(keys=keys)
    assert problem in str(caught.value)


# --------------------------------------------------------------------------------------------------- themes


def test_the_shipped_themes_load_cleanly_and_carry_the_status_colours() -> None:
    found = load_themes([shipped_themes_dir()])
    assert found.problems == []
    assert sorted(found.themes) == ["opstui-ansi", "opstui-dark", "opstui-high-contrast", "opstui-light"]
    for theme in found.themes.values():
        assert {"status-ok", "status-warning", "status-critical", "status-stale"} <= set(theme.variables)
    assert found.themes["opstui-ansi"].ansi


def test_a_16_colour_terminal_gets_the_ansi_theme_unless_one_was_chosen() -> None:
    found = load_themes([shipped_themes_dir()])
    assert choose_theme(found, None, colours=16) == ("opstui-ansi", None)
    assert choose_theme(found, None, colours=256) == ("opstui-dark", None)
    assert choose_theme(found, "opstui-light", colours=16) == ("opstui-light", None)


def test_a_bad_colour_names_the_file_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(
        'name = "mine"\nprimary = "redd"\n'
        '[status]\nok = "green"\nwarning = "yellow"\ncritical = "red"\nstale = "grey"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_theme(path)
    assert str(caught.value) == f"{path}:2: primary: 'redd' is not a colour; did you mean 'red'?"


async def test_a_broken_theme_file_gives_one_notification_and_the_default(tmp_path: Path) -> None:
    (tmp_path / "mine.toml").write_text('name = "mine"\nprimary = "#12345"\n')
    (tmp_path / "other.toml").write_text("this is not toml")
    found = load_themes([shipped_themes_dir(), tmp_path])
    app = OpsApp(
        sample_config(),
        feed=ScriptedFeed(sample_snapshot()),
        clock=lambda: NOW,
        host="vps-1",
        presence=lambda: None,
        theme="mine",
        themes=found,
    )
    async with app.run_test(size=SMALL) as pilot:
        await pilot.pause()
        assert app.theme == "opstui-dark"
        notes = list(app._notifications)
        assert len(notes) == 1
        text = notes[0].message
        assert f"{tmp_path / 'mine.toml'}:2: primary: '#12345' is not a colour" in text
        assert f"{tmp_path / 'other.toml'}:1: TOML syntax error" in text
        assert text.endswith("using the theme opstui-dark")
        assert "daemon: off" in app.dashboard.header.left.plain


async def test_every_shipped_theme_can_be_switched_to_from_the_palette() -> None:
    app = sample_app()
    async with app.run_test(size=SMALL) as pilot:
        for name in ("opstui-light", "opstui-high-contrast", "opstui-ansi", "opstui-dark"):
            app.run_command(f"theme.{name}")
            await pilot.pause()
            assert app.current_theme.name == name
            assert app.theme_variables["status-critical"] == app.current_theme.variables["status-critical"]


# ------------------------------------------------------------------------------------------------- terminal


def run_in_a_terminal(tmp_path: Path, *, then: str) -> tuple[int, float]:
    """Start `opstui` (no config: it watches this host) in a pseudo-terminal; return its exit status and time."""
    env = {**os.environ, "TERM": "xterm-256color", "HOME": str(tmp_path)}
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.chdir(tmp_path)
        os.execve(sys.executable, [sys.executable, "-m", "opstui"], env)
    drawn = b""
    deadline = time.monotonic() + 30
    while b"no alerts" not in drawn and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.1)[0]:
            drawn += os.read(fd, 65536)
    assert b"no alerts" in drawn, drawn[-500:]
    started = time.monotonic()
    if then == "hang up":
        os.close(fd)
    else:
        os.kill(pid, signal.SIGTERM)
    status = 0
    for _ in range(100):
        if then != "hang up" and select.select([fd], [], [], 0)[0]:
            with contextlib.suppress(OSError):  # the terminal reports EIO once the program is gone
                os.read(fd, 65536)
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise AssertionError(f"opstui still running 10 s after: {then}")
    if then != "hang up":
        os.close(fd)
    assert os.WIFEXITED(status), f"killed by signal {os.WTERMSIG(status)} instead of exiting cleanly"
    return os.WEXITSTATUS(status), time.monotonic() - started


def test_a_dropped_terminal_ends_the_dashboard_cleanly(tmp_path: Path) -> None:
    code, _ = run_in_a_terminal(tmp_path, then="hang up")
    assert code == 129


def test_sigterm_ends_the_dashboard_cleanly(tmp_path: Path) -> None:
    code, _ = run_in_a_terminal(tmp_path, then="terminate")
    assert code == 143
    # With no daemon the TUI delivers the alerts: what it logs about that is kept, in a file (never on the
    # screen Textual draws on) that goes through the secret redactor like every other log.
    (log,) = tmp_path.rglob("tui.log")
    assert "no [telegram] token and chat_id: alerts are evaluated and shown, but not sent" in log.read_text()


def test_without_a_terminal_the_dashboard_refuses_to_start(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "opstui"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr == "opstui: the dashboard needs an interactive terminal; for scripts use `opstui check`\n"


def test_a_refresh_too_fast_to_read_is_a_config_error(write_config) -> None:  # type: ignore[no-untyped-def]
    path = write_config('[tui]\nrefresh = "50ms"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}:5: tui.refresh: Input should be greater than or equal to 0.2")
    assert Config().tui.refresh == 2.0 and Config().tui.theme is None


def test_a_wrong_key_is_reported_by_the_command_with_file_and_line(write_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write_config('[tui.keys]\npasue = "space"\n')
    result = subprocess.run(
        [sys.executable, "-m", "opstui", "-c", str(path)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr == (
        f"opstui: config error: {path}:5: tui.keys.pasue: no command has the id 'pasue' (did you mean 'pause'?)\n"
    )
