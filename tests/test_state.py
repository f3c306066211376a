"""The state store: WAL, versioned forward migrations, safe when the TUI and the daemon open it together."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from opstui import state
from opstui.errors import StateError
from opstui.state import StateStore


def test_new_store_is_wal_and_at_the_latest_schema(tmp_path: Path) -> None:
    store = StateStore.in_dir(tmp_path / "nested" / "dir")
    assert store.schema_version == len(state.MIGRATIONS)
    assert store.query("PRAGMA journal_mode")[0][0] == "wal"
    store.close()


def test_migrations_run_forward_from_an_older_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state, "MIGRATIONS", state.MIGRATIONS[:1])
    StateStore.in_dir(tmp_path).close()
    monkeypatch.setattr(state, "MIGRATIONS", [*state.MIGRATIONS, "CREATE TABLE extra (x INTEGER)"])
    store = StateStore.in_dir(tmp_path)
    assert store.schema_version == 2
    assert store.query("SELECT count(*) FROM extra")[0][0] == 0
    store.close()


def test_a_store_from_a_newer_opstui_is_refused_with_a_reason(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "state.db")
    db.execute("PRAGMA user_version = 999")
    db.close()
    with pytest.raises(StateError, match="written by a newer opstui"):
        StateStore.in_dir(tmp_path)


def test_two_processes_opening_and_writing_at_once_both_succeed(tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from opstui.state import StateStore\n"
        "store = StateStore.in_dir(Path(sys.argv[1]))\n"
        "for i in range(200):\n"
        "    store.add_samples([(sys.argv[2], float(i), float(i))])\n"
        "store.close()\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path), name]) for name in ("tui", "daemon")]
    assert [p.wait(60) for p in procs] == [0, 0]
    store = StateStore.in_dir(tmp_path)
    assert len(store.samples("tui", 0)) == 200
    assert len(store.samples("daemon", 0)) == 200
    store.close()


def test_samples_round_trip_and_prune(tmp_path: Path) -> None:
    store = StateStore.in_dir(tmp_path)
    store.add_samples([("q", 1.0, 5.0), ("q", 2.0, 6.0), ("q", 2.0, 99.0)])
    assert store.samples("q", 0) == [(1.0, 5.0), (2.0, 6.0)]
    store.prune_samples(before=2.0)
    assert store.samples("q", 0) == [(2.0, 6.0)]
    store.set_meta("k", "v")
    assert store.get_meta("k") == "v"
    store.close()


def test_an_unwritable_state_dir_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StateError, match="cannot open the state database"):
        StateStore.in_dir(blocker / "state")


async def test_the_daemon_announces_itself_and_withdraws_on_stop(write_config) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    from opstui.config import load_config
    from opstui.daemon import read_presence, run_daemon

    config = load_config(write_config('[host]\ninterval = "1s"\n'))
    stop = asyncio.Event()
    task = asyncio.create_task(run_daemon(config, stop=stop))
    store = StateStore.in_dir(config.state_dir())
    for _ in range(100):
        presence = read_presence(store)
        if presence is not None:
            break
        await asyncio.sleep(0.05)
    assert presence is not None and presence.instance == config.general.instance
    assert presence.alive(presence.heartbeat_at + 1)
    stop.set()
    assert await asyncio.wait_for(task, 5) == 0
    assert read_presence(store) is None
    store.close()
