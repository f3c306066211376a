"""The built-in lock-release: a stale lock after a yes, a held one only with its name typed, and never a lock
that was taken again meanwhile.

The plan reads the lock as its store holds it now (holder and expiry, exactly), and the release is
conditional on exactly that: `DELETE ... WHERE key = $1 AND holder = $2 AND expires = $3` for a lock table,
compare-and-delete in one Lua script for a Redis key. A holder that renewed or re-took the lock between the
plan and the run keeps it (fencing). An advisory lock belongs to a live database session and is refused:
only that session (or ending it, which ends everything it does) releases it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from opstui.actions.base import Emit, Outcome, Prepared, Requirement, Target
from opstui.actions.builtin import Builtin, find
from opstui.actions.queues import with_redis
from opstui.errors import ActionError
from opstui.model import LockState
from opstui.redact import redact
from opstui.units import format_age, format_duration

if TYPE_CHECKING:
    from opstui.config import Config
    from opstui.config.data import PostgresConfig, PostgresLockConfig, RedisConfig, RedisLockConfig

LOOK_TIMEOUT = 10.0
# Compare-and-delete: the key goes only while it still holds the value the plan showed.
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class LockRelease(Builtin):
    def __init__(self, config: Config) -> None:
        super().__init__(
            "lock-release",
            config,
            scope="lock",
            description="Release a lock: a stale one after a yes, a held one only with the lock's name typed",
        )

    def knows(self, source: str) -> bool:
        c = self.config
        return any(f"postgres {p.name}" == source and p.locks for p in c.postgres) or any(
            f"redis {r.name}" == source and r.locks for r in c.redis
        )

    def requirement(self, target: Target | None) -> Requirement:
        if target is not None and target.fields.get("state") != LockState.STALE:
            return Requirement("typed", target.name)
        return Requirement("confirm" if self.confirm else "none")

    def describe(self) -> tuple[str, ...]:
        return (
            "deletes a lock table's row, or a Redis lock key, only while it holds the holder and expiry shown",
            "a lock that is not stale needs its name typed; advisory locks are refused",
        )

    async def prepare(self, target: Target | None, params: Mapping[str, str]) -> Prepared:
        self.check_params(params)
        if target is None or target.source is None:
            raise ActionError("lock-release acts on a lock row: name it, e.g. lock.name='daily batch'")
        kind, _, server = target.source.partition(" ")
        if kind == "postgres":
            database = find(self.config.postgres, server, "[[postgres]]")
            lock = find(database.locks, target.name, f"lock of [[postgres]] {server!r}")
            if lock.kind == "advisory":
                raise ActionError(_advisory_refusal(lock.name, target.fields.get("holder")))
            return await self._prepare_table(target, database, lock)
        redis = find(self.config.redis, server, "[[redis]]")
        return await self._prepare_key(target, redis, find(redis.locks, target.name, f"lock of [[redis]] {server!r}"))

    # ------------------------------------------------------------------------------------------ lock table

    async def _prepare_table(self, target: Target, database: PostgresConfig, lock: PostgresLockConfig) -> Prepared:
        seen = await with_postgres(database, partial(_read_lock, lock))
        if seen is None:
            raise ActionError(
                f"'{lock.name}' is free already (no {lock.key_column} = '{lock.key}' row): nothing to release"
            )
        holder, expires_text, left = seen
        stale = left is not None and left < 0
        if target.fields.get("state") == LockState.STALE and not stale:
            raise ActionError(
                f"'{lock.name}' was taken again since the screen was drawn (held by {holder!r}"
                + (f", expires in {format_duration(left)})" if left is not None else ")")
                + ": nothing released; look again"
            )
        when = (
            "no expiry"
            if left is None
            else f"expired {format_age(-left)} ago"
            if stale
            else f"expires in {format_duration(round(left))}"
        )
        shown = [
            f"PostgreSQL {database.name}: delete the row {lock.key_column} = '{lock.key}' from {lock.table}",
            f"only while its holder is {holder!r} and {lock.expires_column} is {expires_text} ({when}), so a lock "
            "taken again or renewed meanwhile stays",
        ]
        if not stale:
            shown.append("the lock is not stale: its holder may still be working, and a second one could start")
        identity = (self.name, database.name, lock.table, str(lock.key), holder or "", expires_text or "")
        return Prepared(
            tuple(shown), partial(self._release_row, database, lock, holder, expires_text), identity=identity
        )

    async def _release_row(
        self, database: PostgresConfig, lock: PostgresLockConfig, holder: str | None, expires: str | None, emit: Emit
    ) -> Outcome:
        from opstui.sources.postgres import quote

        sql = (
            f"DELETE FROM {quote(lock.table)} WHERE {quote(lock.key_column)}::text = $1 "
            f"AND {quote(lock.holder_column)}::text IS NOT DISTINCT FROM $2 "
            f"AND {quote(lock.expires_column)}::text IS NOT DISTINCT FROM $3"
        )
        emit("info", f"DELETE FROM {lock.table} WHERE {lock.key_column} = '{lock.key}' (holder and expiry as shown)")

        async def release(conn: Any) -> tuple[int, tuple[str | None, str | None, float | None] | None]:
            status = await conn.execute(sql, str(lock.key), holder, expires)
            deleted = int(status.rsplit(" ", 1)[-1])
            return deleted, None if deleted else await _read_lock(lock, conn)

        try:
            deleted, now = await with_postgres(database, release)
        except ActionError as exc:
            return Outcome(ok=False, detail=str(exc))
        if deleted:
            emit("info", f"released '{lock.name}' (was held by {holder!r})")
            return Outcome(ok=True)
        if now is None:
            return Outcome(ok=False, detail=f"not released: '{lock.name}' was released by someone else meanwhile")
        return Outcome(
            ok=False,
            detail=f"not released: '{lock.name}' was taken again or renewed since it was shown "
            f"(now held by {now[0]!r} until {now[1]})",
        )

    # ------------------------------------------------------------------------------------------ Redis key

    async def _prepare_key(self, target: Target, server: RedisConfig, lock: RedisLockConfig) -> Prepared:
        async def read(client: Any) -> tuple[bytes | None, int]:
            return await client.get(lock.key), int(await client.pttl(lock.key))

        value, pttl = await with_redis(server, read)
        if value is None:
            raise ActionError(f"'{lock.name}' is free already ({lock.key} does not exist): nothing to release")
        holder = value.decode("utf-8", "replace")
        when = "no expiry" if pttl < 0 else f"expires in {format_duration(max(1, round(pttl / 1000)))}"
        shown = (
            f"Redis {server.name}: delete {lock.key}",
            f"only while it still holds {redact(holder)!r} ({when}; compare and delete in one Lua script), so a "
            "lock taken again meanwhile stays",
        )
        identity = (self.name, server.name, lock.key, holder)
        return Prepared(shown, partial(self._release_key, server, lock, value), identity=identity)

    async def _release_key(self, server: RedisConfig, lock: RedisLockConfig, value: bytes, emit: Emit) -> Outcome:
        async def release(client: Any) -> int:
            return int(await client.eval(RELEASE_SCRIPT, 1, lock.key, value))

        try:
            deleted = await with_redis(server, release)
        except ActionError as exc:
            return Outcome(ok=False, detail=str(exc))
        if not deleted:
            return Outcome(ok=False, detail=f"not released: {lock.key} was released or taken again meanwhile")
        emit("info", f"released '{lock.name}' (deleted {lock.key})")
        return Outcome(ok=True)


async def _read_lock(lock: PostgresLockConfig, conn: Any) -> tuple[str | None, str | None, float | None] | None:
    """(holder, expiry as text, seconds until it expires; negative: expired) of the lock's row, or None."""
    from opstui.sources.postgres import Session, quote

    expires = quote(lock.expires_column)
    row = await conn.fetchrow(
        f"SELECT {quote(lock.holder_column)}::text AS holder, {expires}::text AS expires_text, "
        f"{expires} AS expires_at, extract(epoch FROM now())::float8 AS db_now "
        f"FROM {quote(lock.table)} WHERE {quote(lock.key_column)}::text = $1 "
        f"ORDER BY {expires} DESC NULLS LAST LIMIT 1",
        str(lock.key),
    )
    if row is None:
        return None
    # The session runs in UTC, so a `timestamp without time zone` reads as the database compares it.
    expiry = Session(conn, time.time(), 0.0, 0.0).epoch(row["expires_at"])
    return row["holder"], row["expires_text"], None if expiry is None else expiry - row["db_now"]


async def with_postgres(database: PostgresConfig, work: Any) -> Any:
    """Run `work(conn)` on a fresh connection (UTC, bounded statements); a problem becomes ActionError."""
    import asyncpg

    try:
        conn = await asyncpg.connect(
            database.dsn,
            timeout=LOOK_TIMEOUT,
            command_timeout=LOOK_TIMEOUT,
            server_settings={
                "application_name": "opstui action",
                "TimeZone": "UTC",
                "statement_timeout": str(int(LOOK_TIMEOUT * 1000)),
            },
        )
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        raise ActionError(
            f"postgres {database.name}: cannot connect: {redact(str(exc)) or type(exc).__name__}"
        ) from None
    try:
        return await work(conn)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
        raise ActionError(f"postgres {database.name}: {redact(str(exc)) or type(exc).__name__}") from None
    finally:
        await conn.close(timeout=LOOK_TIMEOUT)


def _advisory_refusal(name: str, holder: str | None) -> str:
    held_by = f" by {holder}" if holder else ""
    return (
        f"'{name}' is a PostgreSQL advisory lock, held{held_by}: it belongs to that database session and is "
        "released only when the session unlocks it or ends. opstui will not end the session "
        "(pg_terminate_backend): that would abort everything the connection is doing. Restart the process "
        "that holds it; its application_name and pid are the holder shown."
    )
