"""lock-release on a real PostgreSQL lock table and a real Redis lock key: a stale lock after a yes, a held one
only with its name typed, and a lock taken again meanwhile never released (fencing)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import asyncpg
import pytest
import redis

from opstui.demo.backend import LOCK_TABLE
from opstui.errors import ActionError

LOCK = {"lock.name": "daily batch"}


def lock_config(dsn: str, *, kind: str = "table", key: str = '"daily_batch"') -> str:
    return (
        f'[[postgres]]\nname = "main"\ndsn = "{dsn}"\n'
        f'[[postgres.locks]]\nname = "daily batch"\nkind = "{kind}"\nkey = {key}\n'
    )


async def sql(dsn: str, query: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        if not args:
            await conn.execute(query)  # several statements (the demo's schema)
        return list(await conn.fetch(query, *args)) if args or query.lstrip().startswith("SELECT") else []
    finally:
        await conn.close()


async def take(dsn: str, holder: str, expires_in: str) -> None:
    await sql(dsn, LOCK_TABLE)
    await sql(
        dsn,
        "INSERT INTO batch_locks (lock_key, instance_id, expires_at) "
        "VALUES ('daily_batch', $1, now() + $2::text::interval) ON CONFLICT (lock_key) "
        "DO UPDATE SET instance_id = excluded.instance_id, expires_at = excluded.expires_at",
        holder,
        expires_in,
    )


async def rows(dsn: str) -> list[tuple[str, str]]:
    return [(r["lock_key"], r["instance_id"]) for r in await sql(dsn, "SELECT * FROM batch_locks")]


async def test_a_stale_lock_is_released_after_a_yes_and_audited(pg_dsn: str, action_world) -> None:  # type: ignore[no-untyped-def]
    await take(pg_dsn, "batch@vps-1", "-2 minutes")  # its holder died holding it
    world = await action_world(lock_config(pg_dsn))
    assert world.snapshot is not None and world.snapshot.locks[0].state == "stale"

    plan = await world.plan("lock-release", **LOCK)
    assert plan.requirement.kind == "confirm"
    assert plan.shown[0] == "PostgreSQL main: delete the row lock_key = 'daily_batch' from batch_locks"
    assert plan.shown[1].startswith("only while its holder is 'batch@vps-1' and expires_at is ")
    assert "(expired 2m ago)" in plan.shown[1] and "taken again or renewed meanwhile stays" in plan.shown[1]
    done = await world.start(plan)

    assert done.result.ok, done.result
    assert await rows(pg_dsn) == []
    assert done.lines[-1] == "released 'daily batch' (was held by 'batch@vps-1')"
    assert (done.entry.action, done.entry.result, done.entry.target) == (
        "lock-release",
        "ok",
        "postgres main/daily batch",
    )


async def test_a_held_lock_needs_its_name_typed(pg_dsn: str, action_world) -> None:  # type: ignore[no-untyped-def]
    await take(pg_dsn, "batch@vps-1", "5 minutes")
    world = await action_world(lock_config(pg_dsn))
    plan = await world.plan("lock-release", **LOCK)
    assert (plan.requirement.kind, plan.requirement.phrase) == ("typed", "daily batch")
    assert "expires in 5m" in plan.shown[1] or "expires in 4m" in plan.shown[1]
    assert plan.shown[2] == "the lock is not stale: its holder may still be working, and a second one could start"
    with pytest.raises(ActionError, match=r"lock-release is dangerous: it runs only when 'daily batch' is typed"):
        await world.actions.start(plan, plan.confirmation("pressed Confirm"))
    assert world.last_entry().result == "refused"
    assert await rows(pg_dsn) == [("daily_batch", "batch@vps-1")]

    done = await world.start(plan, typed="daily batch")
    assert done.result.ok and await rows(pg_dsn) == []


async def test_a_lock_taken_again_after_the_plan_is_not_released(pg_dsn: str, action_world) -> None:  # type: ignore[no-untyped-def]
    await take(pg_dsn, "batch@vps-1", "-1 minute")
    world = await action_world(lock_config(pg_dsn))
    plan = await world.plan("lock-release", **LOCK)
    await take(pg_dsn, "batch@vps-2", "30 seconds")  # another instance took the expired lock meanwhile
    await world.look()
    with pytest.raises(ActionError, match=r"would run has changed since it was shown"):
        await world.actions.start(plan, plan.confirmation("pressed Confirm"))
    assert await rows(pg_dsn) == [("daily_batch", "batch@vps-2")]

    # The release itself is fenced too: run exactly what the plan showed, against the lock as it is now.
    lines: list[str] = []
    outcome = await plan.prepared.execute(lambda stream, text: lines.append(text))
    assert not outcome.ok
    assert outcome.detail is not None and outcome.detail.startswith(
        "not released: 'daily batch' was taken again or renewed since it was shown (now held by 'batch@vps-2' until "
    )
    assert await rows(pg_dsn) == [("daily_batch", "batch@vps-2")]


async def test_a_lock_retaken_since_the_screen_was_drawn_is_not_planned_as_stale(pg_dsn: str, action_world) -> None:  # type: ignore[no-untyped-def]
    await take(pg_dsn, "batch@vps-1", "-1 minute")
    world = await action_world(lock_config(pg_dsn))  # the screen shows it stale
    await take(pg_dsn, "batch@vps-1", "30 seconds")  # the same instance name takes it again
    with pytest.raises(ActionError, match=r"'daily batch' was taken again since the screen was drawn"):
        await world.plan("lock-release", **LOCK)
    assert await rows(pg_dsn) == [("daily_batch", "batch@vps-1")]


async def test_a_free_lock_has_nothing_to_release(pg_dsn: str, action_world) -> None:  # type: ignore[no-untyped-def]
    await take(pg_dsn, "batch@vps-1", "-1 minute")
    world = await action_world(lock_config(pg_dsn))
    await sql(pg_dsn, "DELETE FROM batch_locks")
    with pytest.raises(ActionError, match=r"'daily batch' is free already"):
        await world.plan("lock-release", **LOCK)


async def test_an_advisory_lock_is_refused_with_the_reason(pg_dsn: str, action_world) -> None:  # type: ignore[no-untyped-def]
    holder = await asyncpg.connect(pg_dsn, server_settings={"application_name": "batch"})
    try:
        await holder.execute("SELECT pg_advisory_lock(42)")
        world = await action_world(lock_config(pg_dsn, kind="advisory", key="42"))
        with pytest.raises(ActionError, match=r"advisory lock, held by batch \(pid \d+\).*pg_terminate_backend"):
            await world.plan("lock-release", **LOCK)
        assert await holder.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 1
    finally:
        await holder.close()


def redis_lock_config(url: str) -> str:
    return (
        f'[[redis]]\nname = "main"\nurl = "{url}"\nmemory = false\n[[redis.locks]]\nname = "sync"\nkey = "lock:sync"\n'
    )


async def test_a_redis_lock_key_is_deleted_only_while_it_holds_what_was_shown(redis_url: str, action_world) -> None:  # type: ignore[no-untyped-def]
    r = redis.Redis.from_url(redis_url)
    r.set("lock:sync", "worker-7f3a", px=60_000)
    world = await action_world(redis_lock_config(redis_url))
    plan = await world.plan("lock-release", **{"lock.name": "sync"})
    assert (plan.requirement.kind, plan.requirement.phrase) == ("typed", "sync")
    assert plan.shown == (
        "Redis main: delete lock:sync",
        "only while it still holds 'worker-7f3a' (expires in 1m; compare and delete in one Lua script), so a lock "
        "taken again meanwhile stays",
    )
    r.set("lock:sync", "worker-9c1d", px=60_000)  # released and taken by another worker meanwhile
    outcome = await plan.prepared.execute(lambda stream, text: None)
    assert not outcome.ok and r.get("lock:sync") == b"worker-9c1d"

    await world.look()
    plan = await world.plan("lock-release", **{"lock.name": "sync"})
    done = await world.start(plan, typed="sync")
    assert done.result.ok and r.exists("lock:sync") == 0


async def test_lock_release_waits_for_no_lock_it_cannot_reach(action_world) -> None:  # type: ignore[no-untyped-def]
    world = await action_world(lock_config("postgresql://nobody@127.0.0.1:1/none"))
    assert world.snapshot is not None and world.snapshot.locks == ()
    with pytest.raises(ActionError, match=r"no lock row with name='daily batch' in the current snapshot"):
        await asyncio.wait_for(world.plan("lock-release", **LOCK), 15)


def test_the_cli_releases_a_held_lock_only_with_its_name_given(pg_dsn: str, write_config) -> None:  # type: ignore[no-untyped-def]
    asyncio.run(take(pg_dsn, "batch@vps-1", "5 minutes"))
    config = write_config(lock_config(pg_dsn))

    def opstui(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "opstui", "-c", str(config), "action", "run", "lock-release", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    refused = opstui("--arg", "lock.name=daily batch", "--yes")
    assert refused.returncode == 2
    assert refused.stderr.splitlines()[-1] == (
        "it is dangerous: --yes is not enough; pass --confirm 'daily batch' to run it"
    )
    assert asyncio.run(rows(pg_dsn)) == [("daily_batch", "batch@vps-1")]
    released = opstui("--arg", "lock.name=daily batch", "--confirm", "daily batch")
    assert released.returncode == 0, released.stderr
    assert "opstui: released 'daily batch' (was held by 'batch@vps-1')" in released.stderr
    assert asyncio.run(rows(pg_dsn)) == []
