"""Alerting inside the real daemon, against the demo world and the fake Bot API; and the TUI's hand-over."""

from __future__ import annotations

import asyncio
import re
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomli_w

from opstui.alerts import start_alerting
from opstui.config import load_config
from opstui.daemon import DaemonPresence, run_daemon, write_presence
from opstui.demo import DemoWorld
from opstui.engine import Engine
from opstui.model import Facts, ProcessInfo
from opstui.sources.base import Source
from opstui.state import StateStore
from telegram_api import ALERTS_CHAT, TOKEN, FakeBotAPI

ITEM = re.compile(r"^(?:🔴|🟠|\(\d+/\d+\) (?:🔴|🟠)) (?!demo: )|^   • ")


async def until(predicate: Callable[[], bool], limit: float, what: str) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def run_for(config_path: Path, done: Callable[[], bool], limit: float, what: str) -> None:
    """Run the daemon until `done()` holds (then a little longer, to show nothing more is sent)."""
    stop = asyncio.Event()
    daemon = asyncio.create_task(run_daemon(load_config(config_path), stop=stop))
    try:
        await until(lambda: done() or daemon.done(), limit, what)
        await asyncio.sleep(3)
    finally:
        stop.set()
        assert await asyncio.wait_for(daemon, 10) == 0


def write(path: Path, base: str, **sections: Any) -> Path:
    data = tomllib.loads(base)
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    path.write_text(tomli_w.dumps(data))
    return path


def firing_items(api: FakeBotAPI) -> list[str]:
    return [line for text in api.texts() for line in text.splitlines() if ITEM.match(line)]


async def test_the_daemon_against_the_demo_world_sends_what_a_person_would_want(
    telegram_api: FakeBotAPI, tmp_path: Path
) -> None:
    telegram = {"token": TOKEN, "chat_id": ALERTS_CHAT, "api_base": telegram_api.url}
    # Host memory over 1% is certain on any machine: one alert we can count on while the demo's process and
    # data sources (built in parallel) add their own as they land.
    noisy = {"group_window": "1s", "memory": {"for": "0s", "host_warning": 1.0}}
    quiet = {"group_window": "1s", "memory": {"for": "0s", "host_warning": 99.0, "host_critical": 99.5}}
    with DemoWorld() as world:
        config_path = write(tmp_path / "noisy.toml", world.config_text(), alerts=noisy, telegram=telegram)

        def host_firing() -> bool:
            return any("host memory at" in line for line in firing_items(telegram_api))

        await run_for(config_path, host_firing, 60, "the host memory alert")
        host_lines = [line for line in firing_items(telegram_api) if "host memory at" in line]
        assert len(host_lines) == 1 and host_lines[0].startswith("🟠 ") and "(limit 1%)" in host_lines[0]

        sent = len(telegram_api.texts())
        await run_for(config_path, lambda: True, 10, "a restart")  # the same incident after a restart
        assert [line for line in firing_items(telegram_api) if "host memory at" in line] == host_lines
        assert len(telegram_api.texts()) >= sent

        write(config_path, world.config_text(), alerts=quiet, telegram=telegram)
        resolved = "✅ Resolved: host memory at"
        await run_for(config_path, lambda: resolved in "\n".join(telegram_api.texts()), 60, "the resolution")

        stopped_at = time.time()
        store = StateStore.in_dir(Path(load_config(config_path).state_dir()))
        queued = [r["kind"] for r in store.query("SELECT kind FROM outbox WHERE status = 'sent' AND kind != 'report'")]
        waiting = store.query("SELECT created_at FROM outbox WHERE status != 'sent'")
        store.close()
    # Every transition sent arrived exactly once, and nothing arrived that was not one; what still waits was
    # queued in the last moments before the daemon stopped (it goes out at the next start).
    assert all(stopped_at - row["created_at"] < 10 for row in waiting)
    assert len(firing_items(telegram_api)) == queued.count("firing")
    lines = [line for text in telegram_api.texts() for line in text.splitlines()]
    assert sum("✅ Resolved" in line for line in lines) == queued.count("resolved")
    assert all(m.parse_mode == "HTML" and m.link_preview_disabled for m in telegram_api.messages)


class Workers(Source):
    kind = "pm2"

    def __init__(self) -> None:
        super().__init__("pm2", interval=0.2, timeout=1.0)
        self.status = "online"

    async def collect(self) -> Facts:
        return Facts(
            processes=(ProcessInfo(key="pm2:api", name="api", manager="pm2", status=self.status, source=self.name),)
        )


async def test_a_tui_delivers_only_while_no_daemon_runs(telegram_api: FakeBotAPI, tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path / "opstui.toml",
            f'[general]\ninstance = "demo"\nstate_dir = "{tmp_path / "state"}"\n',
            alerts={"group_window": "0s", "process_down": {"for": "0s"}},
            telegram={"token": TOKEN, "chat_id": ALERTS_CHAT, "api_base": telegram_api.url},
            report={"enabled": False},
        )
    )
    store = StateStore.in_dir(config.state_dir())
    source = Workers()
    engine = Engine([source], instance="demo")
    await engine.start()
    tui = await start_alerting(engine, config, store, role="tui")
    try:
        assert tui.delivering
        source.status = "stopped"
        await until(lambda: len(telegram_api.texts()) == 1, 10, "the TUI's message")
        # A daemon starts on this host: the TUI steps back and only shows alerts.
        now = time.time()
        write_presence(store, DaemonPresence(pid=1, host="h", instance="demo", started_at=now, heartbeat_at=now))
        await until(lambda: not tui.delivering, 10, "the TUI to step back")
        assert [a.state for a in engine.snapshot.alerts] == ["firing"]
        source.status = "errored"
        await asyncio.sleep(1)
        assert len(telegram_api.texts()) == 1
    finally:
        await tui.stop()
        await engine.stop()
        store.close()


async def test_a_starting_daemon_waits_for_a_delivering_tui_to_step_back(
    telegram_api: FakeBotAPI, tmp_path: Path
) -> None:
    config = load_config(
        write(
            tmp_path / "opstui.toml",
            f'[general]\ninstance = "demo"\nstate_dir = "{tmp_path / "state"}"\n',
            telegram={"token": TOKEN, "chat_id": ALERTS_CHAT, "api_base": telegram_api.url},
            report={"enabled": False},
        )
    )
    store = StateStore.in_dir(config.state_dir())
    tui_engine, daemon_engine = Engine([Workers()], instance="demo"), Engine([Workers()], instance="demo")
    await tui_engine.start()
    await daemon_engine.start()
    tui = await start_alerting(tui_engine, config, store, role="tui")
    assert tui.delivering
    # The daemon announces itself, then starts alerting: it may deliver only once the TUI stopped.
    now = time.time()
    write_presence(store, DaemonPresence(pid=2, host="h", instance="demo", started_at=now, heartbeat_at=now))
    daemon = await start_alerting(daemon_engine, config, store, role="daemon")
    try:
        assert daemon.delivering and not tui.delivering
    finally:
        await daemon.stop()
        await tui.stop()
        await tui_engine.stop()
        await daemon_engine.stop()
        store.close()
