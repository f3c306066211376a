"""The state store: one SQLite database (WAL) per state dir, shared safely by the TUI and the daemon.

It holds what must outlive a process: history samples, alert state, the notification outbox and the
action audit log. The schema is versioned with `PRAGMA user_version` and only ever migrated forward;
each feature adds its tables as a new migration at the end of MIGRATIONS.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from opstui.errors import StateError

MIGRATIONS: list[str] = [
    # 1: key/value facts about this store, and downsampled history for reports.
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE samples (
        series TEXT NOT NULL,
        ts REAL NOT NULL,
        value REAL NOT NULL,
        PRIMARY KEY (series, ts)
    ) WITHOUT ROWID;
    CREATE INDEX samples_ts ON samples (ts);
    """,
    # 2: the action audit log (opstui.actions.audit): every run, refusal and confirmation.
    """
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts REAL NOT NULL,
        actor TEXT NOT NULL,
        actor_kind TEXT NOT NULL,
        actor_id TEXT NOT NULL,
        action TEXT NOT NULL,
        kind TEXT,
        target TEXT,
        args TEXT NOT NULL DEFAULT '[]',
        confirmation TEXT,
        result TEXT NOT NULL,
        reason TEXT,
        exit_status INTEGER,
        duration REAL,
        output TEXT NOT NULL DEFAULT '[]',
        exclusive TEXT,
        host TEXT,
        pid INTEGER,
        deadline REAL
    );
    CREATE INDEX audit_ts ON audit (ts);
    CREATE INDEX audit_running ON audit (exclusive) WHERE result = 'running';
    """,
    # 3: alerting: each alert's lifecycle, the log of what fired and resolved, silences, and the outbox of
    # notifications (written before sending, marked after Telegram accepts; idem_key: one row per transition).
    """
    CREATE TABLE alert_state (key TEXT PRIMARY KEY, data TEXT NOT NULL, updated_at REAL NOT NULL);
    CREATE TABLE alert_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        key TEXT NOT NULL,
        rule TEXT NOT NULL,
        event TEXT NOT NULL,
        level TEXT NOT NULL,
        summary TEXT NOT NULL,
        notified INTEGER NOT NULL
    );
    CREATE INDEX alert_log_at ON alert_log (at);
    CREATE TABLE silences (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        pattern TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        created_by TEXT NOT NULL,
        comment TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        idem_key TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        group_id INTEGER,
        payload TEXT NOT NULL,
        created_at REAL NOT NULL,
        due_at REAL NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',
        parts_sent INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        sent_at REAL,
        message_ids TEXT NOT NULL DEFAULT '',
        error TEXT
    );
    CREATE INDEX outbox_pending ON outbox (status, due_at, group_id);
    """,
]

DB_NAME = "state.db"
BUSY_TIMEOUT_MS = 5000


class StateStore:
    """A connection to the state database; methods are thread-safe and each one is its own transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
            )
            self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._enable_wal()
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except (OSError, sqlite3.Error) as exc:
            raise StateError(f"cannot open the state database {path}: {exc}") from None

    def _enable_wal(self) -> None:
        # Switching to WAL needs a moment of exclusive access and SQLite does not wait for it through the
        # busy handler, so when another process is opening the same new store at once, we retry.
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                self._db.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if ("locked" not in str(exc) and "busy" not in str(exc)) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    @classmethod
    def in_dir(cls, state_dir: Path) -> StateStore:
        return cls(state_dir / DB_NAME)

    @property
    def schema_version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        # Two processes may open a new store at once: the write lock (BEGIN IMMEDIATE) makes one of them
        # migrate while the other waits, then finds the work done.
        with self.transaction() as db:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version > len(MIGRATIONS):
                raise StateError(
                    f"{self.path} was written by a newer opstui (schema {version}, this one knows "
                    f"{len(MIGRATIONS)}); upgrade opstui or point general.state_dir elsewhere"
                )
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in _statements(script):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {number}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE ... COMMIT), rolled back if the block raises."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StateError(f"cannot write the state database {self.path}: {exc}") from None
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._db.execute("ROLLBACK")
                raise StateError(f"cannot write the state database {self.path}: {exc}") from None

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                cursor = self._db.execute(sql, params)
                cursor.row_factory = sqlite3.Row
                return cursor.fetchall()
            except sqlite3.Error as exc:
                raise StateError(f"cannot read the state database {self.path}: {exc}") from None

    def get_meta(self, key: str) -> str | None:
        rows = self.query("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0]["value"] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def add_samples(self, samples: Sequence[tuple[str, float, float]]) -> None:
        """Store (series, time, value) points; a point already stored for the same series and time is kept."""
        if not samples:
            return
        with self.transaction() as db:
            db.executemany("INSERT OR IGNORE INTO samples (series, ts, value) VALUES (?, ?, ?)", samples)

    def samples(self, series: str, since: float) -> list[tuple[float, float]]:
        rows = self.query("SELECT ts, value FROM samples WHERE series = ? AND ts >= ? ORDER BY ts", (series, since))
        return [(row["ts"], row["value"]) for row in rows]

    def prune_samples(self, before: float) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM samples WHERE ts < ?", (before,))

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
