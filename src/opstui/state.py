"""The state store: one SQLite database (WAL) per state dir, shared safely by the TUI and the daemon.

It holds what must outlive a process: history samples, alert state, the notification outbox and the
action audit log. The schema is versioned with `PRAGMA user_version` and only ever migrated forward;
each feature adds its tables as a new migration at the end of MIGRATIONS.

`Store` is the interface the alerting, the notifier and the report use. `StateStore` is its SQLite
implementation, one per host; when daemons on several hosts share a leader, their alerting store is
PostgreSQL behind the same interface and the same SQL (`opstui.state_postgres`), and leader-only writes
are fenced: `transaction(fenced=True)` refuses to write for a daemon whose lease a newer one replaced.
"""

from __future__ import annotations

import abc
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

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
    # 4: high availability: who sends a notification claims it with its lease's fencing token, and the lease
    # itself (one row; PostgreSQL only uses it: a single host's SQLite never has a lease to check).
    """
    ALTER TABLE outbox ADD COLUMN claim_token INTEGER;
    ALTER TABLE outbox ADD COLUMN claimed_at REAL;
    CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        token INTEGER NOT NULL,
        expires_at REAL NOT NULL,
        acquired_at REAL NOT NULL,
        renewed_at REAL NOT NULL,
        about TEXT NOT NULL DEFAULT '{}'
    );
    """,
]

DB_NAME = "state.db"
BUSY_TIMEOUT_MS = 5000
RETRY_CAP = 15.0
"""After a write found the database locked, writes fail at once for 1, 2, 4 ... up to this many seconds before
trying again: a database locked for minutes must not block the daemon's event loop for a busy timeout on every
attempt."""


class Cursor(Protocol):
    """What a statement run inside a transaction gives back (sqlite3's cursor, or the PostgreSQL store's)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Db(Protocol):
    """A write transaction in progress: `?` placeholders, rows readable by column name and by index."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Any: ...


class Fenced(StateError):
    """A leader-only write by a daemon that does not lead (any more): another one took over."""


@dataclass(frozen=True, slots=True)
class Fence:
    """What a leading daemon writes under: its lease's fencing token, and until when (time.monotonic) it may
    trust the lease without having renewed it."""

    token: int
    valid_until: float


class Store(abc.ABC):
    """The state the alerting, the notifier and the report keep; each method is its own transaction.

    The SQL is written once for both implementations: `?` placeholders, `ON CONFLICT`, `RETURNING`.
    """

    fencing = False
    """Whether leader-only writes (`transaction(fenced=True)`) need a valid `fence` (a store daemons share)."""

    def __init__(self) -> None:
        self.fence: Fence | None = None
        """Set by the leadership while this process leads; leader-only writes check it."""
        self.problem: str | None = None
        """The last error this store gave, until a statement succeeds again (shown by /readyz and /metrics)."""

    @property
    @abc.abstractmethod
    def where(self) -> str:
        """The database in words, for messages: a file path, or a host and database name."""

    @abc.abstractmethod
    def transaction(self, *, fenced: bool = False) -> AbstractContextManager[Db]:
        """A write transaction, rolled back if the block raises; only one at a time per database.

        fenced: a write only the leader may make (queueing, claiming, alert state). On a store daemons
        share it raises `Fenced` unless this process holds the newest lease; elsewhere it changes nothing.
        """

    @abc.abstractmethod
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Rows of one read, each readable by column name and by index."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def fence_token(self, db: Db) -> int:
        """Inside a transaction: the token leader-only writes are made under (0 without fencing); raises Fenced."""
        if not self.fencing:
            return 0
        fence = self.fence
        if fence is None or time.monotonic() >= fence.valid_until:
            raise Fenced("this daemon does not lead: only the leader queues and sends notifications")
        newest = int(db.execute("SELECT coalesce(max(token), 0) FROM leases").fetchone()[0])
        if newest > fence.token:
            raise Fenced(f"another daemon leads now (fencing token {newest}, ours {fence.token})")
        return fence.token

    def get_meta(self, key: str) -> str | None:
        rows = self.query("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0]["value"]) if rows else None

    def set_meta(self, key: str, value: str, *, fenced: bool = False) -> None:
        """fenced: only the leader may write it (the Telegram bot's update offset); raises `Fenced` otherwise."""
        with self.transaction(fenced=fenced) as db:
            db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def add_samples(self, samples: Sequence[tuple[str, float, float]]) -> None:
        """Store (series, time, value) points; a point already stored for the same series and time is kept."""
        if not samples:
            return
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO samples (series, ts, value) VALUES (?, ?, ?) ON CONFLICT (series, ts) DO NOTHING",
                samples,
            )

    def samples(self, series: str, since: float) -> list[tuple[float, float]]:
        rows = self.query("SELECT ts, value FROM samples WHERE series = ? AND ts >= ? ORDER BY ts", (series, since))
        return [(row["ts"], row["value"]) for row in rows]

    def prune_samples(self, before: float) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM samples WHERE ts < ?", (before,))

    def _failed(self, problem: str) -> StateError:
        self.problem = problem
        return StateError(problem)


class StateStore(Store):
    """A connection to one host's SQLite state database; methods are thread-safe.

    busy_timeout: how long a write waits for another process's write to end (the daemon waits less than a
    person's CLI command, so a database someone keeps locked cannot stall its event loop for long).
    """

    def __init__(self, path: Path, *, busy_timeout: float = BUSY_TIMEOUT_MS / 1000) -> None:
        super().__init__()
        self.path = path
        self._lock = threading.RLock()
        self._retry_at = 0.0
        self._retry_after = 0.0
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_timeout)
            self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
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
    def in_dir(cls, state_dir: Path, *, busy_timeout: float = BUSY_TIMEOUT_MS / 1000) -> StateStore:
        return cls(state_dir / DB_NAME, busy_timeout=busy_timeout)

    @property
    def where(self) -> str:
        return str(self.path)

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
    def transaction(self, *, fenced: bool = False) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE ... COMMIT), rolled back if the block raises."""
        with self._lock:
            if self.problem is not None and time.monotonic() < self._retry_at:
                raise StateError(self.problem)
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._write_failed(exc) from None
            try:
                if fenced:
                    self.fence_token(self._db)
                yield self._db
            except sqlite3.Error as exc:
                self._db.execute("ROLLBACK")
                raise self._write_failed(exc) from None
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._db.execute("ROLLBACK")
                raise self._write_failed(exc) from None
            self.problem = None
            self._retry_after = 0.0

    def _write_failed(self, exc: sqlite3.Error) -> StateError:
        if "locked" in str(exc) or "busy" in str(exc):  # it waited the busy timeout for this: wait before the next
            self._retry_after = min(RETRY_CAP, max(1.0, self._retry_after * 2))
            self._retry_at = time.monotonic() + self._retry_after
        return self._failed(f"cannot write the state database {self.path}: {exc}")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                cursor = self._db.execute(sql, params)
                cursor.row_factory = sqlite3.Row
                return cursor.fetchall()
            except sqlite3.Error as exc:
                raise self._failed(f"cannot read the state database {self.path}: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
