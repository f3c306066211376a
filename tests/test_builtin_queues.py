"""queue-move and queue-delete on a real Redis, for every kind: jobs moved aside whole, dumped before deleting,
and the libraries (rq, Celery/kombu) still finding their jobs where they expect them afterwards."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path
from typing import Any

import pytest
import redis

from opstui.errors import ActionError

DEAD = r"\d{8}T\d{6}"


def queues_config(url: str, *queues: str, extra: str = "") -> str:
    body = "".join(f"\n[[redis.queues]]\n{q}\n" for q in queues)
    return f'{extra}\n[[redis]]\nname = "main"\nurl = "{url}"\nmemory = false\n{body}'


def client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def read_dump(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def file_mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def dead_letter_keys(r: redis.Redis, key: str) -> list[str]:
    return sorted(k.decode() for k in r.keys(f"{key}:opstui-dead-letter:*"))


async def test_a_backed_up_list_is_moved_aside_whole_and_audited(redis_url: str, action_world) -> None:  # type: ignore[no-untyped-def]
    r = client(redis_url)
    for n in range(162):
        r.lpush("queue:incoming", json.dumps({"chat": f"chat-{n % 17}", "text": f"message {n}"}))
    before = r.lrange("queue:incoming", 0, -1)
    world = await action_world(queues_config(redis_url, 'name = "incoming"\nkey = "queue:incoming"'))

    plan = await world.plan("queue-move", **{"queue.name": "incoming"})
    assert re.fullmatch(
        rf"move 162 waiting jobs from queue:incoming to queue:incoming:opstui-dead-letter:{DEAD}", plan.shown[0]
    )
    assert "nothing is deleted" in plan.shown[1]
    assert plan.requirement.kind == "confirm"
    # Jobs that arrive between showing and running go along: the move takes the key as it is then.
    for n in range(5):
        r.lpush("queue:incoming", f"late {n}")
    done = await world.start(plan)

    assert done.result.ok, done.result
    (aside,) = dead_letter_keys(r, "queue:incoming")
    assert plan.shown[0].endswith(aside), "it went exactly where the plan said"
    assert r.lrange(aside, 0, -1) == [f"late {n}".encode() for n in reversed(range(5))] + before
    assert r.exists("queue:incoming") == 0
    assert done.lines == [f"moved 167 jobs from queue:incoming to {aside}"]
    entry = done.entry
    assert (entry.action, entry.kind, entry.result, entry.target) == (
        "queue-move",
        "builtin",
        "ok",
        "redis main/incoming",
    )
    assert entry.args[0] == plan.shown[0] and entry.confirmation == "pressed Confirm"


async def test_a_configured_dead_letter_key_that_exists_gets_the_jobs_added(redis_url: str, action_world) -> None:  # type: ignore[no-untyped-def]
    r = client(redis_url)
    r.rpush("dead", "old 1", "old 2")
    r.rpush("queue:incoming", "a", "b", "c")
    world = await action_world(
        queues_config(
            redis_url, 'name = "incoming"\nkey = "queue:incoming"', extra='[actions.queue-move]\ndead_letter = "dead"\n'
        )
    )
    done = await world.run("queue-move", **{"queue.name": "incoming"})
    assert done.result.ok
    assert r.lrange("dead", 0, -1) == [b"a", b"b", b"c", b"old 1", b"old 2"], "nothing of either is lost"
    assert r.exists("queue:incoming") == 0


async def test_a_sorted_set_keeps_its_scores(redis_url: str, action_world) -> None:  # type: ignore[no-untyped-def]
    r = client(redis_url)
    r.zadd("retry", {"job-1": 100.0, "job-2": 200.0})
    world = await action_world(queues_config(redis_url, 'name = "retry"\nkind = "zset"'))
    done = await world.run("queue-move", **{"queue.name": "retry"})
    assert done.result.ok
    (aside,) = dead_letter_keys(r, "retry")
    assert r.zrange(aside, 0, -1, withscores=True) == [(b"job-1", 100.0), (b"job-2", 200.0)]


async def test_rq_jobs_moved_aside_are_intact_and_run_when_put_back(redis_url: str, action_world) -> None:  # type: ignore[no-untyped-def]
    from rq import Queue
    from rq.worker import SimpleWorker

    r = client(redis_url)
    q = Queue("default", connection=r)
    jobs = [q.enqueue("builtins.len", [n] * n) for n in range(1, 4)]
    world = await action_world(queues_config(redis_url, 'name = "default"\nkind = "rq"'))
    plan = await world.plan("queue-move", **{"queue.name": "default"})
    assert plan.shown[0].startswith("move 3 waiting jobs from rq:queue:default to rq:queue:default:opstui-dead-letter:")
    assert "rq:job:<id>" in plan.shown[-1]
    assert (await world.start(plan)).result.ok

    assert q.count == 0, "RQ sees an empty queue"
    assert all(job.get_status(refresh=True) == "queued" for job in jobs), "each job's data is untouched"
    (aside,) = dead_letter_keys(r, "rq:queue:default")
    while r.rpoplpush(aside, "rq:queue:default"):
        pass
    SimpleWorker([q], connection=r).work(burst=True)
    assert [job.return_value(refresh=True) for job in jobs] == [1, 2, 3], "put back, they run as before"


def celery_app(url: str) -> Any:
    from celery import Celery

    return Celery("opstui-test", broker=url)


def kombu_size(app: Any, queue: str) -> int:
    with app.connection_for_write() as conn:
        return int(conn.default_channel.queue_declare(queue=queue).message_count)


async def test_celery_priority_lists_each_move_aside_and_kombu_finds_them_when_put_back(  # type: ignore[no-untyped-def]
    redis_url: str, action_world
) -> None:
    app = celery_app(redis_url)
    app.send_task("t.plain", queue="celery")
    for priority in (3, 9, 9):
        app.send_task("t.prio", queue="celery", priority=priority)
    assert kombu_size(app, "celery") == 4
    world = await action_world(queues_config(redis_url, 'name = "celery"\nkind = "celery"'))
    plan = await world.plan("queue-move", **{"queue.name": "celery"})
    assert len([line for line in plan.shown if line.startswith("move ")]) == 3, "one line per priority list"
    done = await world.start(plan)
    assert done.result.ok
    assert kombu_size(app, "celery") == 0
    r = client(redis_url)
    for key in r.keys("celery*:opstui-dead-letter:*"):
        r.rename(key, key.decode().split(":opstui-dead-letter:")[0])
    assert kombu_size(app, "celery") == 4, "the messages are whole and where kombu looks for them"


async def test_sidekiq_queue_moves_aside(redis_url: str, action_world) -> None:  # type: ignore[no-untyped-def]
    r = client(redis_url)
    r.sadd("queues", "default")
    r.lpush("queue:default", json.dumps({"class": "HardWorker", "args": [1], "jid": "a1", "enqueued_at": 1.0}))
    world = await action_world(queues_config(redis_url, 'name = "default"\nkind = "sidekiq"'))
    assert (await world.run("queue-move", **{"queue.name": "default"})).result.ok
    assert r.llen("queue:default") == 0 and len(dead_letter_keys(r, "queue:default")) == 1


@pytest.mark.parametrize(
    ("kind", "keys", "why"),
    [
        ("stream", {"events": ("xadd", {"n": "1"})}, "consumer groups"),
        ("bullmq", {"bull:mail:wait": ("rpush", "1")}, "queue.drain()"),
        ("bull", {"bull:mail:wait": ("rpush", "1")}, "queue.empty()"),
    ],
)
async def test_kinds_whose_bookkeeping_a_move_would_break_are_refused(  # type: ignore[no-untyped-def]
    redis_url: str, action_world, kind: str, keys: dict[str, tuple[str, Any]], why: str
) -> None:
    r = client(redis_url)
    for key, (command, value) in keys.items():
        getattr(r, command)(key, value)
    name = "events" if kind == "stream" else "mail"
    world = await action_world(queues_config(redis_url, f'name = "{name}"\nkind = "{kind}"'))
    for action in ("queue-move", "queue-delete"):
        with pytest.raises(ActionError, match=f"{action} refuses the {kind} queue '{name}': .*{re.escape(why)}"):
            await world.plan(action, **{"queue.name": name})
        assert world.last_entry().result == "refused"
    assert sorted(k.decode() for k in r.keys("*")) == sorted(keys), "nothing was touched"


async def test_an_empty_queue_has_nothing_to_move(redis_url: str, action_world) -> None:  # type: ignore[no-untyped-def]
    world = await action_world(queues_config(redis_url, 'name = "incoming"\nkey = "queue:incoming"'))
    with pytest.raises(ActionError, match=r"'incoming' has no waiting jobs \(queue:incoming empty\): nothing to move"):
        await world.plan("queue-move", **{"queue.name": "incoming"})


async def test_delete_writes_the_dump_first_and_needs_the_queue_s_name_typed(  # type: ignore[no-untyped-def]
    redis_url: str, action_world, tmp_path: Path
) -> None:
    r = client(redis_url)
    items = [json.dumps({"n": n}) for n in range(3)] + ["not json \u00e9"]
    r.rpush("queue:incoming", *items)
    r.rpush("queue:incoming", b"\xff\xfe binary")
    world = await action_world(queues_config(redis_url, 'name = "incoming"\nkey = "queue:incoming"'))

    plan = await world.plan("queue-delete", **{"queue.name": "incoming"})
    assert (plan.requirement.kind, plan.requirement.phrase) == ("typed", "incoming")
    dump = Path(re.search(r"after writing them to (\S+\.jsonl)$", plan.shown[0]).group(1))  # type: ignore[union-attr]
    assert dump.parent == tmp_path / "state" / "dumps"
    with pytest.raises(ActionError, match=r"runs only when 'incoming' is typed"):
        await world.actions.start(plan, plan.confirmation("pressed Confirm"))
    with pytest.raises(ActionError, match=r"got 'queue-delete'"):
        await world.actions.start(plan, plan.confirmation("pressed Confirm", typed="queue-delete"))
    assert r.llen("queue:incoming") == 5, "refused: nothing deleted"

    done = await world.start(plan, typed="incoming")
    assert done.result.ok and done.result.reason == f"dump: {dump}"
    assert r.keys("*") == [], "deleted, aside key included"
    lines = read_dump(dump)
    assert [line.get("item") for line in lines[:4]] == items
    assert lines[4] == {"key": "queue:incoming", "item_base64": "//4gYmluYXJ5"}
    assert file_mode(dump) == 0o600, "the application's data stays its owner's"
    assert done.entry.result == "ok" and done.entry.confirmation == "pressed Confirm"


async def test_delete_keeps_the_jobs_when_the_dump_cannot_be_written(  # type: ignore[no-untyped-def]
    redis_url: str, action_world, tmp_path: Path
) -> None:
    (tmp_path / "not-a-dir").write_text("")
    r = client(redis_url)
    r.zadd("retry", {"job-1": 1.0})
    world = await action_world(
        queues_config(
            redis_url,
            'name = "retry"\nkind = "zset"',
            extra=f'[actions.queue-delete]\ndumps = "{tmp_path}/not-a-dir"\n',
        )
    )
    done = await world.run("queue-delete", typed="retry", **{"queue.name": "retry"})
    assert done.result.result == "failed"
    assert "not deleted: the dump failed" in (done.result.reason or "")
    (aside,) = r.keys("retry:opstui-deleting:*")
    assert r.zrange(aside, 0, -1, withscores=True) == [(b"job-1", 1.0)], "the jobs wait where the reason says"


async def test_rq_delete_is_refused_as_it_would_orphan_the_jobs(redis_url: str, action_world) -> None:  # type: ignore[no-untyped-def]
    from rq import Queue

    Queue("default", connection=client(redis_url)).enqueue("builtins.len", [1])
    world = await action_world(queues_config(redis_url, 'name = "default"\nkind = "rq"'))
    with pytest.raises(ActionError, match=r"rq:job:<id> hashes, .* use RQ's own `rq empty QUEUE`"):
        await world.plan("queue-delete", **{"queue.name": "default"})


async def test_sql_queues_are_not_offered(redis_url: str, pg_dsn: str, action_world) -> None:  # type: ignore[no-untyped-def]
    world = await action_world(
        queues_config(redis_url, 'name = "incoming"')
        + f'\n[[postgres]]\nname = "main"\ndsn = "{pg_dsn}"\n[[postgres.queues]]\nname = "retries"\n'
        'query = "SELECT 3"\n'
    )
    assert world.snapshot is not None
    offered = {q.name: [a.name for a in world.actions.for_row(q)] for q in world.snapshot.queues}
    assert offered == {"incoming": ["queue-move", "queue-delete"], "retries": []}
