"""In `opstui demo`, from the keyboard: restart the worker, move the backed-up queue aside, release the stale
lock; then `opstui audit` lists the three, as the person at the terminal did them."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

import redis

from opstui.config import load_config
from opstui.demo import DemoWorld
from opstui.demo.backend import LOCK_KEY, QUEUE_KEY
from opstui.model import LockState
from opstui.state import StateStore
from opstui.tui import AlertingEngine, action_commands_for
from opstui.tui.app import OpsApp
from opstui.tui.cells import KeyedTable
from opstui.tui.screens import ConfirmScreen


async def until(pilot: Any, condition: Any, what: str, limit: float = 40.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"{what} not seen within {limit}s"
        await pilot.pause(0.2)


async def press_on_row(app: OpsApp, pilot: Any, pane: str, row_key: str, key: str) -> ConfirmScreen:
    """Go to the pane, put the cursor on the row, press the action's key; returns the confirmation."""
    await pilot.press(str([p.pane_id for p in app.panes].index(pane) + 1))
    table = app.query_one(f"#table-{pane}", KeyedTable)
    await until(pilot, lambda: row_key in table.items, f"the row {row_key}")
    table.move_cursor(row=table.get_row_index(row_key))
    await pilot.press(key)
    await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), f"the confirmation of {key}", limit=15)
    assert isinstance(app.screen, ConfirmScreen)
    return app.screen


async def confirm_and_wait(app: OpsApp, pilot: Any) -> None:
    await pilot.press("y")
    assert app.actions is not None
    await until(pilot, lambda: bool(app.actions and app.actions.runs), "the run")
    result = await app.actions.runs[-1].wait()
    assert result.ok, result


async def test_restart_move_and_release_from_the_keyboard_land_in_opstui_audit() -> None:
    with DemoWorld() as world:
        assert world.postgres is not None and world.redis is not None
        # The scene at 3 a.m.: messages backed up, and a batch that died holding the lock a moment ago
        # (the next batch waits before taking over an expired lock, so it blocks every run meanwhile).
        backlog = (json.dumps({"chat": f"chat-{n % 17}", "text": f"message {n}"}) for n in range(162))
        redis.Redis.from_url(world.redis.url).lpush(QUEUE_KEY, *backlog)
        world.postgres.psql(
            "INSERT INTO batch_locks (lock_key, instance_id, expires_at) "
            f"VALUES ('{LOCK_KEY}', 'batch@{os.uname().nodename}/4242', now() - interval '5 seconds') "
            "ON CONFLICT (lock_key) DO UPDATE SET instance_id = excluded.instance_id, expires_at = excluded.expires_at"
        )
        config = load_config(world.config_path)
        feed = AlertingEngine(config)
        store = StateStore.in_dir(config.state_dir())
        actions, commands = action_commands_for(config, feed, store)
        app = OpsApp(config, feed=feed, commands=commands, actions=actions, theme="opstui-dark")
        async with app.run_test(size=(80, 24)) as pilot:
            await until(
                pilot, lambda: any(lock.state is LockState.STALE for lock in app.latest.locks), "the stale lock"
            )

            confirm = await press_on_row(app, pilot, "processes", "processes:worker", "r")
            assert confirm.detail.startswith("SIGTERM to 'worker' (pid ")
            await confirm_and_wait(app, pilot)

            confirm = await press_on_row(app, pilot, "queues", "redis main/incoming", "m")
            assert confirm.detail.startswith("move ") and " waiting jobs from queue:incoming to " in confirm.detail
            await confirm_and_wait(app, pilot)

            confirm = await press_on_row(app, pilot, "locks", "postgres main/daily batch", "l")
            assert confirm.question.typed is None, "a stale lock needs a yes, not its name"
            assert "'batch@" in confirm.detail and "/4242'" in confirm.detail
            await confirm_and_wait(app, pilot)

            await pilot.press("9")
            table = app.query_one("#table-actions", KeyedTable)
            await until(pilot, lambda: len(table.items) == 3, "the three runs in the Actions pane")
            assert [text.split(" ")[0] for text in table.column_text("action")] == [
                "lock-release",
                "queue-move",
                "restart",
            ]
        store.close()
        assert world.postgres.psql("SELECT count(*) FROM batch_locks WHERE instance_id LIKE '%/4242'").strip() == "0"

        audit = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "opstui",
            "-c",
            str(world.config_path),
            "audit",
            "--json",
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(audit.communicate(), 60)
    assert audit.returncode == 0
    entries = json.loads(out)
    assert [(e["action"], e["result"]) for e in entries] == [
        ("restart", "ok"),
        ("queue-move", "ok"),
        ("lock-release", "ok"),
    ]
    assert all(e["actor"].endswith("(tui)") or e["actor"].endswith("(tui, no tty)") for e in entries)
    assert all(e["confirmation"] == "pressed Yes in the TUI" for e in entries)
    assert entries[1]["args"][0].startswith("move ")
