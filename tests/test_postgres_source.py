"""The PostgreSQL source against a real server: tables as queues, the leader lock in every state, advisory locks,
last activity, dispatch counts, and what a person sees when the database refuses, hangs, or dies and comes back."""

from __future__ import annotations

import asyncio
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opstui.config.data import (
    PostgresActivityConfig,
    PostgresConfig,
    PostgresDispatchConfig,
    PostgresLockConfig,
    PostgresQueueConfig,
)
from opstui.demo.backend import LOCK_TABLE
from opstui.demo.servers import EmbeddedPostgres, free_port
from opstui.engine import Engine
from opstui.errors import SourceTimeout, SourceUnavailable
from opstui.model import Facts, LockState
from opstui.sources.postgres import PostgresSource


def collect(source: PostgresSource) -> Facts:
    async def once() -> Facts:
        try:
            return await source.collect()
        finally:
            await source.close()

    return asyncio.run(once())


def source(dsn: str, **sections: Any) -> PostgresSource:
    return PostgresSource(PostgresConfig(dsn=dsn, **sections))


@pytest.fixture
def sql(postgres_server: EmbeddedPostgres, pg_dsn: str) -> Any:
    """Run SQL in this test's database with psql, as the application would have."""
    database = pg_dsn.rsplit("/", 1)[1]
    return lambda statement: postgres_server.psql(statement, database)


def test_table_as_queue_with_condition_custom_query_and_a_missing_table(pg_dsn: str, sql: Any) -> None:
    sql(LOCK_TABLE)
    sql(
        "INSERT INTO failed_amocrm_sync (lead_id, error) SELECT g, '429 Too Many Requests' FROM generate_series(1, 7) g"
    )
    sql("UPDATE failed_amocrm_sync SET error = 'timeout' WHERE lead_id > 5")
    queues = [
        PostgresQueueConfig(name="retries", table="failed_amocrm_sync", warn=5),
        PostgresQueueConfig(name="timeouts", table="failed_amocrm_sync", where="error = 'timeout'"),
        PostgresQueueConfig(
            name="by error",
            query="SELECT count(*), count(*) FILTER (WHERE error = 'timeout') AS timeouts FROM failed_amocrm_sync",
        ),
        PostgresQueueConfig(name="gone", table="no_such_table"),
        PostgresQueueConfig(name="sneaky", query="DELETE FROM failed_amocrm_sync RETURNING 1"),
    ]
    found = {q.name: q for q in collect(source(pg_dsn, queues=queues)).queues}
    assert found["retries"].depth == 7 and found["retries"].kind == "sql"
    assert found["retries"].warn is not None and found["retries"].depth >= found["retries"].warn
    assert found["timeouts"].depth == 2
    assert found["by error"].depth == 7 and found["by error"].parts == {"timeouts": 2}
    assert found["gone"].depth is None and found["gone"].error == 'relation "no_such_table" does not exist'
    assert found["sneaky"].error == "the query tried to write; opstui's connection is read-only"
    assert sql("SELECT count(*) FROM failed_amocrm_sync").strip() == "7"


def lock(**fields: Any) -> PostgresLockConfig:
    return PostgresLockConfig(**{"name": "daily batch", "key": "daily_batch", **fields})


def test_lock_table_held_free_stale_and_unexpected(pg_dsn: str, sql: Any) -> None:
    sql(LOCK_TABLE)
    expected = "batch@vps-*"
    assert collect(source(pg_dsn, locks=[lock(expected_holder=expected)])).locks[0].state is LockState.FREE

    sql(
        "INSERT INTO batch_locks (lock_key, instance_id, expires_at, created_at, updated_at) "
        "VALUES ('daily_batch', 'batch@vps-1', now() + interval '30 seconds', now() - interval '2 minutes', now())"
    )
    held = collect(source(pg_dsn, locks=[lock(expected_holder=expected)])).locks[0]
    assert held.state is LockState.HELD and held.holder == "batch@vps-1"
    assert held.expires_at == pytest.approx(time.time() + 30, abs=2)
    assert held.since == pytest.approx(time.time() - 120, abs=2)
    assert held.updated_at == pytest.approx(time.time(), abs=2)

    sql("UPDATE batch_locks SET instance_id = 'batch@vps-2-old-deploy'")
    other = collect(source(pg_dsn, locks=[lock(expected_holder="batch@vps-1")])).locks[0]
    assert other.state is LockState.UNEXPECTED and other.holder == "batch@vps-2-old-deploy"

    sql("UPDATE batch_locks SET expires_at = now() - interval '5 minutes'")
    stale = collect(source(pg_dsn, locks=[lock(expected_holder="batch@vps-1")])).locks[0]
    assert stale.state is LockState.STALE  # expired but still there: its holder died holding it
    assert stale.expires_at == pytest.approx(time.time() - 300, abs=2)


def test_lock_table_with_other_names_an_integer_key_and_a_missing_column(pg_dsn: str, sql: Any) -> None:
    sql(
        'CREATE TABLE "Leader" (id int PRIMARY KEY, owner text, valid_until timestamp);'
        "INSERT INTO \"Leader\" VALUES (1, 'cron@db-host', now()::timestamp + interval '1 hour')"
    )
    custom = lock(
        key="1",
        table="Leader",
        key_column="id",
        holder_column="owner",
        expires_column="valid_until",
        created_column="",
        updated_column="",
    )
    broken = lock(name="broken", key="1", table="Leader", key_column="id", holder_column="owner")
    found = {x.name: x for x in collect(source(pg_dsn, locks=[custom, broken])).locks}
    assert found["daily batch"].state is LockState.HELD and found["daily batch"].holder == "cron@db-host"
    assert found["daily batch"].expires_at == pytest.approx(time.time() + 3600, abs=2)
    assert found["broken"].state is LockState.UNKNOWN
    assert found["broken"].error == 'column "expires_at" does not exist'


async def test_advisory_lock_holder_from_pg_locks(pg_dsn: str) -> None:
    import asyncpg

    holder = await asyncpg.connect(pg_dsn, server_settings={"application_name": "batch@vps-1"})
    locks = [
        PostgresLockConfig(name="bigint", kind="advisory", key=-72707369, expected_holder="batch@*"),
        PostgresLockConfig(name="pair", kind="advisory", key=[7, 42], expected_holder="cron@*"),
        PostgresLockConfig(name="free", kind="advisory", key=12345),
    ]
    try:
        await holder.execute("SELECT pg_advisory_lock(-72707369), pg_advisory_lock(7, 42)")
        src = source(pg_dsn, locks=locks)
        found = {x.name: x for x in (await src.collect()).locks}
        pid = holder.get_server_pid()
        assert found["bigint"].state is LockState.HELD and found["bigint"].holder == f"batch@vps-1 (pid {pid})"
        assert found["pair"].state is LockState.UNEXPECTED
        assert found["free"].state is LockState.FREE
        await holder.execute("SELECT pg_advisory_unlock_all()")
        assert (await src.collect()).locks[0].state is LockState.FREE
        await src.close()
    finally:
        await holder.close()


def test_last_activity_from_timestamptz_timestamp_in_a_local_zone_and_a_query(pg_dsn: str, sql: Any) -> None:
    database = pg_dsn.rsplit("/", 1)[1]
    sql(f"ALTER DATABASE {database} SET timezone TO 'Asia/Almaty'")  # naive timestamps are local wall time
    sql(
        "CREATE TABLE leads (id int, synced_at timestamptz, seen timestamp, epoch_ms bigint);"
        "INSERT INTO leads VALUES (1, now() - interval '3 minutes', now() - interval '3 minutes', "
        "(extract(epoch FROM now()) * 1000)::bigint - 60000)"
    )
    activity = [
        PostgresActivityConfig(name="synced", table="leads", column="synced_at", max_age=600),
        PostgresActivityConfig(name="seen", table="leads", column="seen"),
        PostgresActivityConfig(name="epoch", query="SELECT max(epoch_ms) FROM leads"),
        PostgresActivityConfig(name="empty", table="leads", column="synced_at", where="id > 100"),
        PostgresActivityConfig(name="typo", table="leads", column="synced"),
    ]
    found = {a.name: a for a in collect(source(pg_dsn, activity=activity)).activity}
    assert found["synced"].last_at == pytest.approx(time.time() - 180, abs=2)
    assert found["synced"].detail == "max(synced_at) of leads" and found["synced"].max_age == 600
    assert found["seen"].last_at == pytest.approx(time.time() - 180, abs=2)
    assert found["epoch"].last_at == pytest.approx(time.time() - 60, abs=2)
    assert found["empty"].last_at is None and found["empty"].error is None
    assert found["typo"].error == (
        'column "synced" does not exist (Perhaps you meant to reference the column "leads.synced_at".)'
    )


def test_dispatch_counts_from_a_query(pg_dsn: str, sql: Any) -> None:
    sql(
        "CREATE TABLE report_items (run_id int, delivered bool, failed bool, created_at timestamptz DEFAULT now());"
        "INSERT INTO report_items SELECT 1, true, false FROM generate_series(1, 20);"
        "INSERT INTO report_items SELECT 2, g <= 14, g = 15, now() - interval '1 minute' FROM generate_series(1, 17) g"
    )
    query = (
        "SELECT count(*) AS processed, count(*) FILTER (WHERE delivered) AS sent, "
        "count(*) FILTER (WHERE failed) AS failed, min(created_at) AS run_started_at "
        "FROM report_items WHERE run_id = (SELECT max(run_id) FROM report_items)"
    )
    dispatch = [
        PostgresDispatchConfig(name="daily", query=query),
        PostgresDispatchConfig(name="wrong", query="SELECT count(*) AS total FROM report_items"),
    ]
    found = {d.name: d for d in collect(source(pg_dsn, dispatch=dispatch)).dispatch}
    daily = found["daily"]
    assert (daily.processed, daily.sent, daily.failed) == (17, 14, 1) and daily.mismatch
    assert daily.run_started_at == pytest.approx(time.time() - 60, abs=3)
    assert found["wrong"].error == "the query returned no column processed or sent (its columns: total)"


def test_a_slow_query_is_that_item_s_error_and_the_rest_still_reads(pg_dsn: str, sql: Any) -> None:
    sql(LOCK_TABLE)
    config = PostgresConfig(
        dsn=pg_dsn,
        timeout=0.5,
        queues=[
            PostgresQueueConfig(name="slow", query="SELECT count(*) FROM pg_sleep(3)"),
            PostgresQueueConfig(name="retries", table="failed_amocrm_sync"),
        ],
    )
    found = {q.name: q for q in collect(PostgresSource(config)).queues}
    assert found["slow"].error == "the query took longer than 500ms (statement_timeout)"
    assert found["retries"].depth == 0 and found["retries"].error is None


# ----------------------------------------------------------------------------------------------- failures


def test_refused_connection_and_a_database_that_does_not_exist(postgres_server: EmbeddedPostgres) -> None:
    port = free_port()
    with pytest.raises(SourceUnavailable) as caught:
        collect(source(f"postgresql://postgres@127.0.0.1:{port}/postgres"))
    assert str(caught.value) == f"connection refused at 127.0.0.1:{port}"
    with pytest.raises(SourceUnavailable) as caught:
        collect(source(postgres_server.dsn_for("no_such_db")))
    assert str(caught.value) == f"database no_such_db does not exist at 127.0.0.1:{postgres_server.port}"


def test_a_server_that_never_answers_times_out() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        config = PostgresConfig(dsn=f"postgresql://postgres@127.0.0.1:{port}/postgres", timeout=0.5)
        with pytest.raises(SourceTimeout) as caught:
            collect(PostgresSource(config))
    assert str(caught.value) == f"no answer from 127.0.0.1:{port} within 500ms"


@pytest.fixture(scope="module")
def own_postgres(server_root: Path) -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL of this module's own, to lock down and to kill, leaving the shared one alone."""
    root = server_root / "own-postgres"
    server = EmbeddedPostgres(root).start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


def test_a_wrong_password_is_named_without_showing_it(own_postgres: EmbeddedPostgres) -> None:
    own_postgres.psql("CREATE ROLE app LOGIN PASSWORD 'right-horse-battery'")
    hba = own_postgres.data / "pg_hba.conf"
    hba.write_text("host all app 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
    own_postgres.psql("SELECT pg_reload_conf()")
    dsn = f"postgresql://app:wrong-staple@127.0.0.1:{own_postgres.port}/postgres"
    with pytest.raises(SourceUnavailable) as caught:
        collect(source(dsn))
    assert str(caught.value) == f"password authentication failed for user app at 127.0.0.1:{own_postgres.port}"
    good = f"postgresql://app:right-horse-battery@127.0.0.1:{own_postgres.port}/postgres"
    assert collect(source(good, queues=[PostgresQueueConfig(name="n", query="SELECT 3")])).queues[0].depth == 3


async def test_a_dead_server_keeps_the_last_good_values_aged_and_recovers(own_postgres: EmbeddedPostgres) -> None:
    own_postgres.psql("CREATE TABLE IF NOT EXISTS jobs (id int); DELETE FROM jobs; INSERT INTO jobs VALUES (1), (2)")
    clock = [1000.0]
    src = source(own_postgres.dsn, queues=[PostgresQueueConfig(name="jobs", table="jobs")])
    engine = Engine([src], instance="test", clock=lambda: clock[0])
    await engine.run_source(src)
    engine.flush()
    assert engine.snapshot.queues[0].depth == 2

    own_postgres.kill()
    clock[0] += 20
    await engine.run_source(src)
    engine.flush()
    status = engine.snapshot.sources["postgres main"]
    assert not status.ok and status.age(clock[0]) == 20.0
    assert status.error == f"connection refused at 127.0.0.1:{own_postgres.port}"
    assert engine.snapshot.queues[0].depth == 2 and engine.snapshot.is_stale(engine.snapshot.queues[0])

    own_postgres.start()
    # The test server runs without fsync: what it had just written may be gone after the crash.
    own_postgres.psql(
        "CREATE TABLE IF NOT EXISTS jobs (id int); DELETE FROM jobs; INSERT INTO jobs VALUES (1), (2), (3)"
    )
    await engine.run_source(src)
    engine.flush()
    assert engine.snapshot.sources["postgres main"].ok and engine.snapshot.queues[0].depth == 3

    # A restart between two ticks: the kept connection is dead, a fresh one is made at once.
    own_postgres.stop()
    own_postgres.start()
    clock[0] += 5
    await engine.run_source(src)
    engine.flush()
    assert engine.snapshot.sources["postgres main"].ok and engine.snapshot.sources["postgres main"].age(clock[0]) == 0
    await engine.stop()
