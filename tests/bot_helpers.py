"""Test helpers for the Telegram command bot: a config with real actions, a snapshot to talk about, and a
harness that runs `CommandBot` against the fake Bot API while a test plays the people writing to it."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import tomli_w

from alerting_helpers import dispatch, lock, process, queue, snapshot
from opstui.actions import Actions
from opstui.bot import CommandBot
from opstui.config import Config, load_config
from opstui.model import AlertInfo, HealthComponent, HealthInfo, Level, LockState, LogTail, Snapshot
from opstui.state import StateStore
from telegram_api import ALERTS_CHAT, TOKEN, FakeBotAPI, Message

ADMIN, VIEWER, STRANGER, OTHER_ADMIN = 1001, 1002, 1003, 1004
PY = sys.executable
SECRET_PART = TOKEN.split(":", 1)[1]

# The restart action: a real program that records which process it restarted and says so.
RESTART = (
    "import sys; marker, name = sys.argv[1], sys.argv[2]; open(marker, 'a').write(name + '\\n'); "
    "print(f'restarting {name}'); print(f'{name} online', file=sys.stderr)"
)
RECOVERY = f"#!{PY}\nimport sys\nprint('recovery mode', *sys.argv[1:])\n"


class Clock:
    """Real time that a test can move forward (buttons expire, conflicts last)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


async def until(predicate: Callable[[], Any], what: str, limit: float = 15.0) -> Any:
    """Wait, letting the bot work, until `predicate()` is truthy (at most `limit` seconds); returns its value."""
    deadline = time.monotonic() + limit
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def write_bot_config(
    tmp_path: Path, api: FakeBotAPI, *, instance: str = "web-1", read_only: bool = False, **bot: Any
) -> Config:
    script = tmp_path / "recovery.py"
    script.write_text(RECOVERY)
    script.chmod(0o755)
    data: dict[str, Any] = {
        "general": {
            "instance": instance,
            "timezone": "UTC",
            "state_dir": str(tmp_path / f"state-{instance}"),
            "read_only": read_only,
        },
        "host": {"enabled": False},
        "telegram": {"token": TOKEN, "chat_id": ALERTS_CHAT, "api_base": api.url},
        "bot": {"enabled": True, "admins": [ADMIN, OTHER_ADMIN], "viewers": [VIEWER], "poll_timeout": "2s", **bot},
        "actions": {
            # The bot's /restart runs the action named restart; here a real program stands in for the built-in,
            # which needs a process manager to act on.
            "restart": {"enabled": False},
            "command": [
                {
                    "name": "restart",
                    "description": "Restart a process",
                    "scope": "process",
                    "command": [PY, "-c", RESTART, str(tmp_path / "restarted.txt"), "{process.name}"],
                },
                {"name": "purge-dead", "dangerous": True, "command": [PY, "-c", "print('purged 3 dead jobs')"]},
                {"name": "slow", "command": [PY, "-c", "import time; print('started', flush=True); time.sleep(60)"]},
            ],
            "script": [
                {
                    "name": "recovery",
                    "script": "./recovery.py",
                    "modes": ["full", "soft"],
                    "modes_with_value": ["company"],
                }
            ],
        },
    }
    path = tmp_path / f"{instance}.toml"
    path.write_text(tomli_w.dumps(data))
    return load_config(path)


def world(now: float) -> Snapshot:
    """A small backend in trouble: a crash-looping worker, a backed-up queue, a firing alert, an error log."""
    base = snapshot(
        now,
        processes=(
            process("worker", "errored", restarts=283, restarts_last_hour=12, pid=4242),
            process("api", "online", restarts=2, pid=4243),
        ),
        queues=(queue("incoming", 162, warn=100, crit=1000),),
        locks=(lock("daily-batch", LockState.HELD, holder="vps-2"),),
        dispatch=(dispatch(120, 95, 3, last_event_at=now - 3600),),
        health=(
            HealthInfo(
                key="http:api",
                name="api",
                url="http://127.0.0.1:3000/health",
                ok=False,
                source="http",
                status_code=503,
                latency_ms=41.0,
                components=(HealthComponent("redis", True), HealthComponent("whatsapp", False, "session expired")),
            ),
        ),
        logs=(
            LogTail(
                key="pm2:worker",
                name="worker",
                source="pm2",
                path="/home/bot/.pm2/logs/worker-error.log",
                lines=("Error: ECONNREFUSED 127.0.0.1:6379", "at <anonymous> & retrying"),
            ),
        ),
    )
    alert = AlertInfo(
        key="restart_loop:pm2:worker",
        rule="restart_loop",
        level=Level.CRITICAL,
        state="firing",
        summary="worker restarted 12 times in 10m",
        since=now - 300,
        subject="worker",
        source="pm2",
    )
    return base.replace(instance="web-1", alerts=(alert,))


@contextlib.asynccontextmanager
async def bot_factory(tmp_path: Path) -> AsyncIterator[BotFactory]:
    """What the `make_bot` fixture gives: one fake Bot API and clock per test, and bots made on demand."""
    clock = Clock()
    with FakeBotAPI(clock=clock) as api:
        factory = BotFactory(api, clock, tmp_path)
        try:
            yield factory
        finally:
            for harness in factory.made:
                await harness.stop()
                harness.store.close()


class BotFactory:
    def __init__(self, api: FakeBotAPI, clock: Clock, tmp_path: Path) -> None:
        self.api = api
        self.clock = clock
        self.tmp_path = tmp_path
        self.made: list[BotHarness] = []

    def __call__(
        self, *, start: bool = True, is_leader: Callable[[], bool] | None = None, instance: str = "web-1", **bot: Any
    ) -> BotHarness:
        """A bot with these [bot] settings (its own state store and actions), started unless `start=False`."""
        config = write_bot_config(self.tmp_path, self.api, instance=instance, **bot)
        harness = BotHarness(self.api, config, self.clock, is_leader=is_leader)
        self.made.append(harness)
        return harness.start() if start else harness


class BotHarness:
    """One bot (one daemon's) against the fake API, with its own state store and actions."""

    def __init__(
        self,
        api: FakeBotAPI,
        config: Config,
        clock: Clock,
        *,
        is_leader: Callable[[], bool] | None = None,
        store: StateStore | None = None,
    ) -> None:
        self.api = api
        self.config = config
        self.clock = clock
        self.store = store or StateStore.in_dir(config.state_dir())
        self.snapshot: Snapshot | None = world(clock())
        self.actions = Actions.from_config(
            config, store=self.store, snapshot=lambda: self.snapshot, telegram_allowlist=config.bot.admins
        )
        self.bot = CommandBot(
            config,
            store=self.store,
            actions=lambda: self.actions,
            snapshot=lambda: self.snapshot,
            is_leader=is_leader,
            clock=clock,
            jitter=lambda: 0.0,
        )
        self.stopped = False

    def start(self) -> BotHarness:
        self.bot.start()
        return self

    async def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            await self.bot.stop()
            await self.actions.close()

    async def says(self, user: int, text: str, *, chat_id: int | None = None, **more: Any) -> Message:
        """`user` writes `text`; returns the bot's (first) answer in that chat."""
        chat = user if chat_id is None else chat_id
        before = len(self.api.messages)
        self.api.user_says(user, text, chat_id=chat, **more)
        return await until(
            lambda: next((m for m in self.api.messages[before:] if m.chat_id == chat), None), f"an answer to {text}"
        )

    async def press(self, user: int, message: Message, *, button: int = 0, data: str | None = None) -> dict[str, Any]:
        """`user` presses a button under `message`; returns how the bot answered the press."""
        query = self.api.press(user, message, button=button, data=data)
        return await until(lambda: self.api.answers.get(query), "the press to be answered")

    def audit(self) -> list[Any]:
        return self.actions.audit.recent(100)
