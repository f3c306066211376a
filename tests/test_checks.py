"""Backups and required environment variables: yes/no facts with a level, never a secret value."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from conftest import EngineFor
from opstui.check import render_json
from opstui.config import ConfigError, load_config
from opstui.model import CheckInfo, Level
from opstui.sources import build_sources
from opstui.sources.checks import BackupSource, EnvSource

HOUR = 3600.0


def dump(directory: Path, name: str, *, age: float, size: int = 2048) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    then = time.time() - age
    os.utime(path, (then, then))
    return path


async def check_of(engine) -> CheckInfo:  # type: ignore[no-untyped-def]
    snap = await engine.collect_once()
    (check,) = snap.checks
    return check


def backup(tmp_path: Path, **options) -> BackupSource:  # type: ignore[no-untyped-def]
    options.setdefault("path", str(tmp_path / "db" / "*.sql.gz"))
    return BackupSource("database", max_age=26 * HOUR, min_size=1024, interval=60, timeout=5, **options)


async def test_a_fresh_backup_is_ok_and_says_how_old_it_is(tmp_path: Path, engine_for: EngineFor) -> None:
    dump(tmp_path / "db", "db-1.sql.gz", age=30 * HOUR)
    dump(tmp_path / "db", "db-2.sql.gz", age=3 * HOUR + 60, size=1536)
    check = await check_of(engine_for(backup(tmp_path)))
    assert (check.level, check.kind, check.key) == (Level.OK, "backup", "backup:database")
    assert check.detail == "newest db-2.sql.gz is 3h 1m old, 1.5 KiB"


async def test_old_empty_or_missing_backups_are_critical(tmp_path: Path, engine_for: EngineFor) -> None:
    engine = engine_for(backup(tmp_path))
    (tmp_path / "db").mkdir()
    check = await check_of(engine)
    assert (check.level, check.detail) == (Level.CRITICAL, f"no file matches {tmp_path / 'db' / '*.sql.gz'}")
    dump(tmp_path / "db", "db-1.sql.gz", age=30 * HOUR)
    check = await check_of(engine)
    assert (check.level, check.detail) == (Level.CRITICAL, "newest db-1.sql.gz is 1d 6h old, 2.0 KiB: older than 1d2h")
    dump(tmp_path / "db", "db-2.sql.gz", age=60, size=0)
    check = await check_of(engine)
    assert (check.level, check.detail) == (Level.CRITICAL, "newest db-2.sql.gz is 1m old, 0 B: smaller than 1.0 KiB")


async def test_any_depth_and_a_warning_level(tmp_path: Path, engine_for: EngineFor) -> None:
    dump(tmp_path / "db" / "2024" / "05", "db.sql.gz", age=40 * HOUR)
    source = backup(tmp_path, path=str(tmp_path / "db" / "**" / "*.sql.gz"), level=Level.WARNING)
    check = await check_of(engine_for(source))
    assert check.level is Level.WARNING and check.detail is not None and check.detail.startswith("newest db.sql.gz")


async def test_a_backup_directory_that_is_not_there_is_a_source_error(tmp_path: Path, engine_for: EngineFor) -> None:
    snap = await engine_for(backup(tmp_path)).collect_once()
    assert snap.sources["backup database"].error == f"{tmp_path / 'db'} does not exist"


ENV_FILE = """\
# the bot's settings
export TELEGRAM_TOKEN=123456:TEST-not-a-real-token
DATABASE_URL = "postgres://bot:pw-not-real@db/bot"
REDIS_URL=
SENTRY_DSN=''
"""


async def test_required_variables_in_a_dotenv_file_by_name_only(tmp_path: Path, engine_for: EngineFor) -> None:
    env = tmp_path / ".env"
    env.write_text(ENV_FILE)
    names = ["TELEGRAM_TOKEN", "DATABASE_URL", "REDIS_URL", "SENTRY_DSN", "API_KEY"]
    source = EnvSource("bot", required=names, file=env, interval=60, timeout=5)
    snap = await engine_for(source).collect_once()
    (check,) = snap.checks
    assert (check.level, check.key, check.kind) == (Level.CRITICAL, "env:bot", "env")
    assert check.detail == f"not set in {env}: REDIS_URL, SENTRY_DSN, API_KEY"
    shown = repr(snap) + render_json(snap) + repr(vars(source))
    assert "TEST-not-a-real-token" not in shown and "pw-not-real" not in shown


async def test_required_variables_in_opstuis_own_environment(
    monkeypatch: pytest.MonkeyPatch, engine_for: EngineFor
) -> None:
    monkeypatch.setenv("OPSTUI_TEST_TOKEN", "not-a-real-value")
    monkeypatch.delenv("OPSTUI_TEST_ABSENT", raising=False)
    engine = engine_for(EnvSource("self", required=["OPSTUI_TEST_TOKEN"], interval=60, timeout=5))
    check = await check_of(engine)
    assert (check.level, check.detail) == (Level.OK, "all 1 set")
    engine = engine_for(EnvSource("self", required=["OPSTUI_TEST_ABSENT"], interval=60, timeout=5))
    assert (await check_of(engine)).detail == "not set: OPSTUI_TEST_ABSENT"


async def test_an_env_file_that_is_not_there_is_a_source_error(tmp_path: Path, engine_for: EngineFor) -> None:
    source = EnvSource("bot", required=["A"], file=tmp_path / ".env", interval=60, timeout=5)
    snap = await engine_for(source).collect_once()
    assert snap.sources["env bot"].error == f"{tmp_path / '.env'} does not exist"


def test_config_rejects_what_is_not_a_variable_name(write_config) -> None:  # type: ignore[no-untyped-def]
    path = write_config('[[env]]\nname = "bot"\nrequired = ["TOKEN", "MY-VAR"]\n')
    with pytest.raises(ConfigError, match=re.escape("env[0].required: not environment variable names: MY-VAR")):
        load_config(path)


async def test_config_builds_backup_and_env_sources(tmp_path: Path, write_config, engine_for: EngineFor) -> None:  # type: ignore[no-untyped-def]
    dump(tmp_path / "db", "db.sql.gz", age=60)
    (tmp_path / ".env").write_text(ENV_FILE)
    config = load_config(
        write_config(
            f'[[backups]]\nname = "db"\npath = "{tmp_path}/db/*.gz"\nmax_age = "1h"\nlevel = "warning"\n'
            f'[[env]]\nname = "bot"\nrequired = ["TELEGRAM_TOKEN"]\nfile = "{tmp_path / ".env"}"\n'
        )
    )
    sources = [s for s in build_sources(config) if s.kind in ("backup", "env")]
    assert [s.name for s in sources] == ["backup db", "env bot"]
    snap = await engine_for(*sources).collect_once()
    assert [(c.name, c.level) for c in snap.checks] == [("db", Level.OK), ("bot", Level.OK)]
