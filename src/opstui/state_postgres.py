"""The alerting store daemons on several hosts share: PostgreSQL behind the same `Store` interface as SQLite.

With `[daemon.ha]`, alert state, the alert log, silences, samples and the notification outbox live here, so
whichever daemon leads picks up exactly where the last one stopped. There is one schema and one set of SQL
for both stores: `MIGRATIONS` with SQLite's column types translated, and `?` placeholders turned into `$1 ...`.
Every write transaction takes one advisory lock first, so writers queue as they do on SQLite's single write
lock, and code that reads then writes in a transaction (grouping in the outbox) behaves the same on both.

asyncpg is asynchronous and `Store` is not (the alert processor runs inside the engine's publish), so the
connection lives on a private event loop in its own thread, and each call waits for its answer there: a
millisecond or two to a database on the same network. While the database cannot be reached, every call
fails at once with StateError (no caller waits for a connect timeout) and a background task reconnects.

PostgreSQL rather than Redis: the outbox needs a transaction that checks the fencing token and writes in one
step, a unique idempotency key, and durability through a crash; a Redis that loses its last second of writes
or fails over to a replica that had not seen them would lose or repeat notifications.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import re
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from opstui import state
from opstui.errors import StateError
from opstui.redact import redact
from opstui.state import Db, Store

if TYPE_CHECKING:
    from opstui.config import Config

log = logging.getLogger("opstui.state")

T = TypeVar("T")

WRITE_LOCK = 0x6F707374  # "opst": the advisory lock every write transaction holds, like SQLite's write lock
RECONNECT_CAP = 10.0
STATEMENT_CACHE = 200

_TYPES = [
    (re.compile(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b"), "BIGSERIAL PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
    (re.compile(r"\)\s*WITHOUT ROWID"), ")"),
]


def ddl(script: str) -> str:
    """A migration written for SQLite, in PostgreSQL's types."""
    for pattern, replacement in _TYPES:
        script = pattern.sub(replacement, script)
    return script


def placeholders(sql: str) -> str:
    """`?` placeholders as `$1, $2 ...`, leaving quoted strings alone."""
    out: list[str] = []
    number = 0
    quoted = False
    for char in sql:
        if char == "'":
            quoted = not quoted
        elif char == "?" and not quoted:
            number += 1
            out.append(f"${number}")
            continue
        out.append(char)
    return "".join(out)


class _Cursor:
    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def fetchone(self) -> Any:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[Any]:
        return list(self._rows)


class _Transaction:
    """What `PostgresStore.transaction()` yields: `execute` and `executemany` as on a sqlite3 connection."""

    def __init__(self, store: PostgresStore) -> None:
        self.store = store

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> _Cursor:
        return self.store._call(lambda conn: self.store._fetch(conn, sql, parameters))

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> None:
        rows = [tuple(p) for p in parameters]
        if rows:
            self.store._call(lambda conn: self.store._executemany(conn, sql, rows))


class PostgresStore(Store):
    """A `Store` in a PostgreSQL database; thread-safe, each method its own transaction."""

    fencing = True

    def __init__(self, dsn: str, *, timeout: float = 5.0) -> None:
        super().__init__()
        self.dsn = dsn
        self.timeout = timeout
        parts = urlsplit(dsn)
        self._where = (
            f"PostgreSQL {parts.path.lstrip('/') or '?'} at {parts.hostname or 'localhost'}:{parts.port or 5432}"
        )
        self._lock = threading.RLock()
        self._conn: Any = None
        self._statements: dict[str, Any] = {}
        self._down: str | None = "not connected yet"
        self._reconnecting: concurrent.futures.Future[None] | None = None
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="opstui-shared-state", daemon=True)
        self._thread.start()
        self._reconnect(first=True)
        # Wait for the first connection (and the schema), so a daemon starts knowing whether it can write.
        with contextlib.suppress(concurrent.futures.TimeoutError, concurrent.futures.CancelledError):
            if self._reconnecting is not None:
                self._reconnecting.result(timeout + 1)

    @property
    def where(self) -> str:
        return self._where

    @property
    def schema_version(self) -> int:
        return int(self.query("SELECT version FROM opstui_schema")[0][0])

    # ------------------------------------------------------------------------------------------ the interface

    @contextmanager
    def transaction(self, *, fenced: bool = False) -> Iterator[Db]:
        with self._lock:
            self._call(lambda conn: conn.execute(f"BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})"))
            tx = _Transaction(self)
            try:
                if fenced:
                    self.fence_token(tx)
                yield tx
                self._call(lambda conn: conn.execute("COMMIT"))
            except BaseException:
                self._rollback()
                raise
            self.problem = None

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return self._call(lambda conn: self._fetch(conn, sql, params)).fetchall()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._disconnect(), self._loop).result(2.0)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(2.0)
        if not self._thread.is_alive():
            self._loop.close()

    # ------------------------------------------------------------------------------------------ calls

    def _call(self, work: Callable[[Any], Awaitable[T]]) -> T:
        """Run `work(connection)` on the store's loop and wait for it; StateError if it cannot be done."""
        conn = self._conn
        if conn is None:
            self._reconnect()
            raise self._failed(f"cannot reach the shared state database ({self._where}): {self._down}")
        future = asyncio.run_coroutine_threadsafe(asyncio.wait_for(work(conn), self.timeout), self._loop)
        try:
            return future.result(self.timeout + 1.0)
        except Exception as exc:
            import asyncpg

            if isinstance(exc, asyncpg.PostgresError) and not conn.is_closed():
                raise self._failed(f"the shared state database ({self._where}) refused: {_reason(exc)}") from None
            self._lost(conn, exc)
            raise self._failed(f"lost the shared state database ({self._where}): {_reason(exc)}") from None

    async def _fetch(self, conn: Any, sql: str, params: Sequence[Any]) -> _Cursor:
        statement = await self._prepared(conn, sql)
        rows = await statement.fetch(*params)
        status = statement.get_statusmsg() or ""
        count = status.rsplit(" ", 1)[-1]
        return _Cursor(rows, int(count) if count.isdigit() else len(rows))

    async def _executemany(self, conn: Any, sql: str, rows: list[tuple[Any, ...]]) -> None:
        statement = await self._prepared(conn, sql)
        await statement.executemany(rows)

    async def _prepared(self, conn: Any, sql: str) -> Any:
        statement = self._statements.get(sql)
        if statement is None:
            if len(self._statements) >= STATEMENT_CACHE:
                self._statements.clear()
            statement = self._statements[sql] = await conn.prepare(placeholders(sql))
        return statement

    def _rollback(self) -> None:
        conn = self._conn
        if conn is None or conn.is_closed():
            return
        try:
            asyncio.run_coroutine_threadsafe(conn.execute("ROLLBACK"), self._loop).result(self.timeout)
        except Exception as exc:
            self._lost(conn, exc)

    # ------------------------------------------------------------------------------------------ connection

    def _lost(self, conn: Any, exc: BaseException) -> None:
        if self._conn is conn:
            if self._down is None:
                log.error("lost the shared state database (%s): %s; reconnecting", self._where, _reason(exc))
            self._conn = None
            self._statements = {}
            self._down = _reason(exc)
            conn.terminate()
        self._reconnect()

    def _reconnect(self, *, first: bool = False) -> None:
        if self._closed or (self._reconnecting is not None and not self._reconnecting.done()):
            return
        self._reconnecting = asyncio.run_coroutine_threadsafe(self._connect_loop(first), self._loop)

    async def _connect_loop(self, first: bool) -> None:
        delay = 1.0
        while not self._closed:
            try:
                conn = await self._connect()
            except StateError as exc:  # a schema from a newer opstui: retrying cannot help, but keep saying so
                self._down = str(exc)
                log.error("%s", exc)
            except Exception as exc:
                if first or self._down != _reason(exc):
                    log.warning("cannot reach the shared state database (%s): %s", self._where, _reason(exc))
                first = False
                self._down = _reason(exc)
            else:
                if self._down is not None and self._down != "not connected yet":
                    log.info("the shared state database (%s) answers again", self._where)
                self._down = None
                self._conn = conn
                return
            await asyncio.sleep(delay)
            delay = min(RECONNECT_CAP, delay * 2)

    async def _connect(self) -> Any:
        import asyncpg

        conn = await asyncpg.connect(
            self.dsn,
            timeout=self.timeout,
            command_timeout=self.timeout,
            server_settings={"application_name": "opstui shared state"},
        )
        try:
            await self._migrate(conn)
        except BaseException:
            conn.terminate()
            raise
        return conn

    async def _migrate(self, conn: Any) -> None:
        async with conn.transaction():
            await conn.execute(f"SELECT pg_advisory_xact_lock({WRITE_LOCK})")
            await conn.execute("CREATE TABLE IF NOT EXISTS opstui_schema (version INTEGER NOT NULL)")
            version = await conn.fetchval("SELECT version FROM opstui_schema")
            if version is None:
                await conn.execute("INSERT INTO opstui_schema (version) VALUES (0)")
                version = 0
            if version > len(state.MIGRATIONS):
                raise StateError(
                    f"the shared state database ({self._where}) was written by a newer opstui (schema {version}, "
                    f"this one knows {len(state.MIGRATIONS)}); upgrade opstui on this host"
                )
            for number, script in enumerate(state.MIGRATIONS[version:], start=version + 1):
                await conn.execute(ddl(script))
                await conn.execute("UPDATE opstui_schema SET version = $1", number)

    async def _disconnect(self) -> None:
        if self._reconnecting is not None:
            self._reconnecting.cancel()
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await asyncio.wait_for(conn.close(), 1.0)
            except Exception:
                conn.terminate()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | concurrent.futures.TimeoutError):
        return "no answer in time"
    return redact(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


def alerting_store(config: Config, local: Store | None = None) -> Store:
    """Where alerting keeps its state: the shared PostgreSQL with `[daemon.ha]`, else this host's SQLite (`local`,
    or a new connection to it)."""
    ha = config.daemon.ha
    if ha.enabled:
        return PostgresStore(ha.dsn, timeout=ha.timeout)
    return local if local is not None else state.StateStore.in_dir(config.state_dir())
