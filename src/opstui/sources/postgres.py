"""A PostgreSQL database: tables as queues, the leader lock (a lock table or an advisory lock), last activity and
dispatch counts, over one persistent read-only connection that reconnects by itself.

The connection is opened with `default_transaction_read_only`, so no query opstui runs (yours included) can
write, and with a `statement_timeout`, so a slow query cannot hold a tick. A query that fails (a missing table
or column, a typo in your SQL) is that item's error; only a connection problem fails the whole source.
Table and column names from the config were checked to be plain names; they are quoted, so they are used
exactly as written.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import fnmatch
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from opstui.config.data import (
    PostgresActivityConfig,
    PostgresConfig,
    PostgresDispatchConfig,
    PostgresLockConfig,
    PostgresQueueConfig,
)
from opstui.errors import SourceError, SourceTimeout, SourceUnavailable
from opstui.model import ActivityInfo, DispatchInfo, Facts, LockInfo, LockState, QueueInfo
from opstui.sources.base import Source, sections
from opstui.units import format_duration, parse_time


def _asyncpg() -> Any:
    """asyncpg, imported at the first connection rather than with this module: building the sources (before the
    TUI's first frame) should not wait for it (docs/performance.md)."""
    import asyncpg

    return asyncpg


Item = QueueInfo | LockInfo | ActivityInfo | DispatchInfo


class Session:
    """What a reader needs of the tick: the connection, the local time, and the database's clock and zone."""

    def __init__(self, conn: Any, now: float, db_offset: float, utc_offset: float) -> None:
        self.conn = conn
        self.now = now
        self.db_offset = db_offset
        """Local clock minus the database's clock, so times the database compares show right locally."""
        self.utc_offset = utc_offset
        """The session time zone's offset from UTC, for `timestamp without time zone` values."""

    def epoch(self, value: Any) -> float | None:
        """Unix seconds from what a timestamp column or query returns: timestamptz, timestamp (in the session's
        time zone, as PostgreSQL itself compares them), date, a unix time, or ISO 8601 text."""
        if isinstance(value, datetime):
            if value.tzinfo is None:
                return value.replace(tzinfo=UTC).timestamp() - self.utc_offset
            return value.timestamp()
        if isinstance(value, date):
            return datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp() - self.utc_offset
        if isinstance(value, Decimal):
            value = float(value)
        return parse_time(value)

    def local(self, db_time: float | None) -> float | None:
        return None if db_time is None else db_time + self.db_offset


def quote(name: str) -> str:
    """A checked table or column name (config/data.py allows letters, digits, _ and one dot) as SQL."""
    return ".".join(f'"{part}"' for part in name.split("."))


class Reader(abc.ABC):
    def __init__(self, source: str, name: str) -> None:
        self.source = source
        self.name = name
        self.key = f"{source}/{name}"

    @abc.abstractmethod
    async def read(self, s: Session) -> Item:
        """Read the item; a failing query raises asyncpg's error, which `failed` turns into the item's error."""

    @abc.abstractmethod
    def failed(self, error: str) -> Item:
        """The item when its query failed."""


class QueueReader(Reader):
    def __init__(self, source: str, config: PostgresQueueConfig) -> None:
        super().__init__(source, config.name)
        self.config = config
        if config.query is not None:
            self.sql = config.query
        else:
            assert config.table is not None
            self.sql = f"SELECT count(*) FROM {quote(config.table)}"
            if config.where:
                self.sql += f" WHERE {config.where}"

    async def read(self, s: Session) -> Item:
        row = await s.conn.fetchrow(self.sql)
        values = list(row.items()) if row is not None else []
        depth = _int(values[0][1]) if values else 0
        if depth is None:
            return self.failed(f"the query's first column is not a number: {values[0][1]!r}")
        parts = {name: number for name, value in values[1:] if (number := _int(value)) is not None}
        return self._info(depth, parts)

    def failed(self, error: str) -> Item:
        return self._info(None, {}, error)

    def _info(self, depth: int | None, parts: dict[str, int], error: str | None = None) -> QueueInfo:
        return QueueInfo(
            key=self.key,
            name=self.name,
            kind="sql",
            depth=depth,
            source=self.source,
            parts=parts,
            warn=self.config.warn,
            crit=self.config.crit,
            error=error,
        )


class TableLockReader(Reader):
    """One row of a lock table (the seed's batch_locks): holder, expiry, and when it was taken and renewed."""

    def __init__(self, source: str, config: PostgresLockConfig) -> None:
        super().__init__(source, config.name)
        self.config = config
        created = quote(config.created_column) if config.created_column else "NULL"
        updated = quote(config.updated_column) if config.updated_column else "NULL"
        expires = quote(config.expires_column)
        # The key column is compared as text so an integer key column works too; lock tables are small.
        self.sql = (
            f"SELECT {quote(config.holder_column)}::text AS holder, {expires} AS expires_at, "
            f"{created} AS created_at, {updated} AS updated_at "
            f"FROM {quote(config.table)} WHERE {quote(config.key_column)}::text = $1 "
            f"ORDER BY {expires} DESC NULLS LAST LIMIT 1"
        )

    async def read(self, s: Session) -> Item:
        row = await s.conn.fetchrow(self.sql, str(self.config.key))
        if row is None:
            return self._info(LockState.FREE)
        expires = s.epoch(row["expires_at"])
        holder = row["holder"]
        expected = self.config.expected_holder
        db_now = s.now - s.db_offset
        if expires is not None and expires < db_now:
            state = LockState.STALE  # its holder died or hangs without releasing it
        elif expected is not None and (holder is None or not fnmatch.fnmatchcase(holder, expected)):
            state = LockState.UNEXPECTED
        else:
            state = LockState.HELD
        return self._info(
            state,
            holder=holder,
            expires_at=s.local(expires),
            since=s.local(s.epoch(row["created_at"])),
            updated_at=s.local(s.epoch(row["updated_at"])),
        )

    def failed(self, error: str) -> Item:
        return self._info(LockState.UNKNOWN, error=error)

    def _info(self, state: LockState, **fields: Any) -> LockInfo:
        return LockInfo(
            key=self.key,
            name=self.name,
            state=state,
            source=self.source,
            expected_holder=self.config.expected_holder,
            **fields,
        )


class AdvisoryLockReader(TableLockReader):
    """pg_advisory_lock(key) or pg_advisory_lock(k1, k2): pg_locks says who holds it, pg_stat_activity who that is.

    PostgreSQL splits a bigint key into classid (high 32 bits) and objid (low 32 bits) with objsubid 1; a pair of
    int4 keys becomes classid, objid with objsubid 2. Both are oids, i.e. unsigned.
    """

    SQL = """
        SELECT l.pid, a.application_name, a.usename, host(a.client_addr) AS client
          FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE l.locktype = 'advisory' AND l.granted
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND l.classid::bigint = $1 AND l.objid::bigint = $2 AND l.objsubid = $3
    """

    def __init__(self, source: str, config: PostgresLockConfig) -> None:
        super().__init__(source, config)
        key = config.key
        if isinstance(key, list):
            self.args = (key[0] & 0xFFFFFFFF, key[1] & 0xFFFFFFFF, 2)
        else:
            value = int(key) & 0xFFFFFFFFFFFFFFFF
            self.args = (value >> 32, value & 0xFFFFFFFF, 1)

    async def read(self, s: Session) -> Item:
        row = await s.conn.fetchrow(self.SQL, *self.args)
        if row is None:
            return self._info(LockState.FREE)
        app = row["application_name"] or None
        holder = (
            f"{app} (pid {row['pid']})" if app else f"pid {row['pid']} ({row['usename']}@{row['client'] or 'local'})"
        )
        expected = self.config.expected_holder
        matches = expected is None or any(fnmatch.fnmatchcase(h, expected) for h in (app or "", holder))
        return self._info(LockState.HELD if matches else LockState.UNEXPECTED, holder=holder)


class ActivityReader(Reader):
    def __init__(self, source: str, config: PostgresActivityConfig) -> None:
        super().__init__(source, config.name)
        self.config = config
        if config.query is not None:
            self.sql = config.query
        else:
            assert config.table is not None and config.column is not None
            self.sql = f"SELECT max({quote(config.column)}) FROM {quote(config.table)}"
            if config.where:
                self.sql += f" WHERE {config.where}"

    async def read(self, s: Session) -> Item:
        return self._info(s.local(s.epoch(await s.conn.fetchval(self.sql))))

    def failed(self, error: str) -> Item:
        return self._info(None, error)

    def _info(self, last_at: float | None, error: str | None = None) -> ActivityInfo:
        where = f"max({self.config.column}) of {self.config.table}" if self.config.query is None else "query"
        return ActivityInfo(
            key=self.key,
            name=self.name,
            source=self.source,
            last_at=last_at,
            max_age=self.config.max_age,
            detail=where,
            error=error,
        )


class DispatchReader(Reader):
    def __init__(self, source: str, config: PostgresDispatchConfig) -> None:
        super().__init__(source, config.name)
        self.config = config

    async def read(self, s: Session) -> Item:
        row = await s.conn.fetchrow(self.config.query)
        values = dict(row.items()) if row is not None else {}
        missing = [c for c in ("processed", "sent") if c not in values]
        if row is not None and missing:
            columns = ", ".join(values) or "none"
            return self.failed(f"the query returned no column {' or '.join(missing)} (its columns: {columns})")
        started = s.local(s.epoch(values.get("run_started_at")))
        return DispatchInfo(
            key=self.key,
            name=self.name,
            source=self.source,
            processed=_int(values.get("processed")) or 0,
            sent=_int(values.get("sent")) or 0,
            failed=_int(values.get("failed")) or 0,
            run_started_at=started,
        )

    def failed(self, error: str) -> Item:
        return DispatchInfo(
            key=self.key, name=self.name, source=self.source, processed=0, sent=0, failed=0, error=error
        )


class PostgresSource(Source):
    kind = "postgres"

    def __init__(self, config: PostgresConfig) -> None:
        # Connect and statement timeouts end a tick at about `timeout`; the engine's is the backstop.
        super().__init__(f"postgres {config.name}", interval=config.interval, timeout=config.timeout + 2.0)
        self.config = config
        parts = urlsplit(config.dsn)
        self.address = f"{parts.hostname or 'localhost'}:{parts.port or 5432}"
        self.database = parts.path.strip("/") or parts.username or "postgres"
        self.user = parts.username or "postgres"
        self.detail = f"{self.address}/{self.database}, read-only"
        name = self.name
        self.readers: list[Reader] = [QueueReader(name, q) for q in config.queues]
        self.readers += [
            AdvisoryLockReader(name, lock) if lock.kind == "advisory" else TableLockReader(name, lock)
            for lock in config.locks
        ]
        self.readers += [ActivityReader(name, a) for a in config.activity]
        self.readers += [DispatchReader(name, d) for d in config.dispatch]
        self.provides = sections(
            queues=config.queues, locks=config.locks, activity=config.activity, dispatch=config.dispatch
        )
        self._conn: Any = None
        self._utc_offset = 0.0

    async def collect(self) -> Facts:
        session = await self._session()
        try:
            items = [await self._read(reader, session) for reader in self.readers]
        except BaseException as exc:
            await self._drop()  # cancelled mid-query, or the connection broke: never reuse it
            if isinstance(exc, Exception):
                raise self._failure(exc) from None
            raise
        return Facts(
            queues=tuple(i for i in items if isinstance(i, QueueInfo)),
            locks=tuple(i for i in items if isinstance(i, LockInfo)),
            activity=tuple(i for i in items if isinstance(i, ActivityInfo)),
            dispatch=tuple(i for i in items if isinstance(i, DispatchInfo)),
        )

    async def _session(self) -> Session:
        """Connect if needed and read the database's clock, the tick's first query.

        A connection kept from an earlier tick may have died with a server restart since: then one fresh
        connection is tried at once, so a restart between two ticks costs no failed tick.
        """
        for attempt in (1, 2):
            reused = self._conn is not None and not self._conn.is_closed()
            conn = await self._connection()
            try:
                db_now = float(await conn.fetchval("SELECT extract(epoch FROM now())"))
            except BaseException as exc:
                await self._drop()
                if isinstance(exc, Exception) and reused and attempt == 1:
                    continue
                if isinstance(exc, Exception):
                    raise self._failure(exc) from None
                raise
            now = time.time()
            return Session(conn, now, now - db_now, self._utc_offset)
        raise AssertionError("unreachable: the second attempt returns or raises")

    async def _read(self, reader: Reader, session: Session) -> Item:
        try:
            return await reader.read(session)
        except _asyncpg().PostgresError as exc:
            if _connection_level(exc):
                raise
            return reader.failed(_query_error(exc, self.config.timeout))

    async def _connection(self) -> Any:
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        timeout = self.config.timeout
        conn = None
        try:
            conn = await _asyncpg().connect(
                self.config.dsn,
                timeout=timeout,
                # The server's statement_timeout cancels a slow query first, as that item's error.
                command_timeout=timeout + 1.0,
                statement_cache_size=len(self.readers) + 8,
                server_settings={
                    "application_name": "opstui",
                    "default_transaction_read_only": "on",
                    "statement_timeout": str(int(timeout * 1000)),
                },
            )
            self._utc_offset = float(await conn.fetchval("SELECT extract(timezone FROM now())"))
        except BaseException as exc:
            if conn is not None:  # connected, then failed or was cancelled: do not leave it open
                conn.terminate()
            if not isinstance(exc, Exception):
                raise
            raise self._failure(exc) from None
        self._conn = conn
        return conn

    def _failure(self, exc: BaseException) -> SourceError:
        asyncpg = _asyncpg()
        where = self.address
        text = str(exc).strip()
        if isinstance(exc, TimeoutError):
            return SourceTimeout(f"no answer from {where} within {format_duration(self.config.timeout)}")
        if isinstance(exc, asyncpg.InvalidPasswordError):
            return SourceUnavailable(f"password authentication failed for user {self.user} at {where}")
        if isinstance(exc, asyncpg.InvalidCatalogNameError):
            return SourceUnavailable(f"database {self.database} does not exist at {where}")
        if isinstance(exc, asyncpg.CannotConnectNowError):
            return SourceUnavailable(f"the server at {where} is starting up or shutting down")
        if isinstance(exc, asyncpg.TooManyConnectionsError):
            return SourceUnavailable(f"the server at {where} has no free connection slots")
        if isinstance(exc, asyncpg.PostgresConnectionError | asyncpg.InterfaceError | ConnectionResetError):
            return SourceUnavailable(f"connection to {where} lost: {text or type(exc).__name__}")
        if isinstance(exc, asyncpg.PostgresError):
            return SourceUnavailable(f"{where}: {text}")
        if isinstance(exc, ConnectionRefusedError) or "Connection refused" in text:
            return SourceUnavailable(f"connection refused at {where}")
        if isinstance(exc, OSError) and ("Name or service not known" in text or "resolution" in text):
            return SourceUnavailable(f"cannot resolve the host of {where}")
        return SourceUnavailable(f"cannot use {where}: {text or type(exc).__name__}")

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), timeout=2.0)


def _connection_level(exc: Exception) -> bool:
    """Errors about the connection or the server (class 08, 53, and 57P: shutdown), not one query's problem
    (57014, a statement timeout, is the query's)."""
    sqlstate = getattr(exc, "sqlstate", None) or ""
    return sqlstate[:2] in ("08", "53") or sqlstate.startswith("57P")


def _query_error(exc: Exception, timeout: float) -> str:
    asyncpg = _asyncpg()
    if isinstance(exc, asyncpg.QueryCanceledError):
        return f"the query took longer than {format_duration(timeout)} (statement_timeout)"
    if isinstance(exc, asyncpg.ReadOnlySQLTransactionError):
        return "the query tried to write; opstui's connection is read-only"
    message = str(getattr(exc, "message", None) or exc).strip()
    hint = getattr(exc, "hint", None)
    return f"{message} ({hint})" if hint else message


def _int(value: Any) -> int | None:
    """A count from a query: int, numeric or float; an interval in seconds; None for anything else."""
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, timedelta):
        return int(value.total_seconds())
    return None
