"""The built-in queue-move and queue-delete: a Redis queue's waiting jobs moved aside whole, or dumped and deleted.

Both act on the keys that hold the waiting jobs (the queue layouts of `sources.redis_queues` name them) in one
Lua script, so the move is atomic: a job is either still in the queue or in the dead-letter key, never lost
and never both. A delete first moves the keys aside the same way, writes what they hold to a dump file, and
only then deletes them, so a job arriving meanwhile stays in the queue and nothing deleted is missing from
the dump.

Where moving jobs would break the library's own bookkeeping, the action refuses and says what to use
instead: a stream carries its consumer groups with it; BullMQ and Bull know a job's state only by the list
that holds its id; RQ's list holds only ids, so deleting it would orphan the jobs (moving it is fine).
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opstui.actions.base import Emit, Outcome, Prepared, Requirement, Target
from opstui.actions.builtin import Builtin, find
from opstui.errors import ActionError
from opstui.redact import redact

if TYPE_CHECKING:
    from opstui.config import Config
    from opstui.config.data import RedisConfig, RedisQueueConfig

# KEYS[1..n]: the queue's keys; KEYS[n+1..2n]: where their jobs go. Every pair is checked before anything is
# written (a script's writes are not undone by a later error); then each key is renamed, or its jobs are added
# to a key that exists already. Returns how many jobs each key held.
MOVE_SCRIPT = """
local n = #KEYS / 2
for i = 1, n do
  local from, to = redis.call('TYPE', KEYS[i]).ok, redis.call('TYPE', KEYS[n + i]).ok
  if from ~= 'none' and from ~= 'list' and from ~= 'zset' then
    return redis.error_reply('WRONGTYPE ' .. KEYS[i] .. ' is a ' .. from .. ', not a list or sorted set')
  end
  if from ~= 'none' and to ~= 'none' and to ~= from then
    return redis.error_reply('WRONGTYPE ' .. KEYS[n + i] .. ' exists and is a ' .. to .. ', not a ' .. from)
  end
end
local moved = {}
for i = 1, n do
  local from, to = KEYS[i], KEYS[n + i]
  local kind = redis.call('TYPE', from).ok
  local count = 0
  if kind == 'list' then
    count = redis.call('LLEN', from)
    if redis.call('EXISTS', to) == 0 then
      redis.call('RENAME', from, to)
    else
      while redis.call('RPOPLPUSH', from, to) do end
    end
  elseif kind == 'zset' then
    count = redis.call('ZCARD', from)
    if redis.call('EXISTS', to) == 0 then
      redis.call('RENAME', from, to)
    else
      redis.call('ZUNIONSTORE', to, 2, to, from)
      redis.call('DEL', from)
    end
  end
  moved[i] = count
end
return moved
"""
DUMP_CHUNK = 1000
"""Jobs read per command while writing a dump."""
LOOK_TIMEOUT = 10.0

_NOT_WHOLE_KEYS = {
    "stream": (
        "a stream is read through consumer groups that live in the stream itself: moving or deleting it takes "
        "the groups along, and every consumer's XREADGROUP then fails with NOGROUP; trim it with XTRIM, or "
        "acknowledge what is pending, from your application"
    ),
    "bullmq": (
        "BullMQ knows a job's state only by the list or set that holds its id: ids taken out of its lists leave "
        "jobs in no state (getState() says 'unknown') that BullMQ never cleans up; use BullMQ's own tools: "
        "queue.pause(), then queue.drain() or queue.obliterate()"
    ),
    "bull": (
        "Bull knows a job's state only by the list that holds its id, and its priority index would still "
        "point at moved jobs (new prioritized jobs would be misplaced); use Bull's own tools: queue.pause(), "
        "then queue.empty()"
    ),
}
_ORPHANS = (
    "RQ's list holds only job ids; the jobs themselves live in rq:job:<id> hashes, which deleting the list "
    "would leave behind for good; move the jobs aside with queue-move, or use RQ's own `rq empty QUEUE`"
)


def utc_stamp(now: float | None = None) -> str:
    """`20261122T044500`: the moment in dead-letter keys and dump file names, sortable and free of colons."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(now))


class QueueAction(Builtin):
    """What queue-move and queue-delete share: finding the queue's Redis server and keys, counting, moving."""

    supported: tuple[str, ...]

    def knows(self, source: str) -> bool:
        return any(f"redis {redis.name}" == source and redis.queues for redis in self.config.redis)

    def locate(self, target: Target | None) -> tuple[RedisConfig, RedisQueueConfig, tuple[str, ...]]:
        """The server, the queue's config and the keys holding its waiting jobs; refuses unsupported kinds."""
        from opstui.sources.redis_queues import layout_for

        if target is None or target.source is None:
            raise ActionError(f"{self.name} acts on a queue row: name it, e.g. queue.name=incoming")
        server = find(self.config.redis, target.source.removeprefix("redis "), "[[redis]]")
        queue = find(server.queues, target.name, f"queue of [[redis]] {server.name!r}")
        if queue.kind not in self.supported:
            why = _NOT_WHOLE_KEYS.get(queue.kind, _ORPHANS)
            raise ActionError(f"{self.name} refuses the {queue.kind} queue '{queue.name}': {why}")
        return server, queue, layout_for(queue).waiting()

    async def waiting_now(self, server: RedisConfig, keys: Sequence[str]) -> dict[str, int]:
        """How many jobs each key holds right now (lists and sorted sets)."""

        async def count(client: Any) -> dict[str, int]:
            counts = {}
            for key in keys:
                kind = (await client.type(key)).decode()
                if kind not in ("none", "list", "zset"):
                    raise ActionError(f"{key} is a {kind}, not a list or sorted set: is the queue's kind right?")
                counts[key] = 0 if kind == "none" else await (client.llen if kind == "list" else client.zcard)(key)
            return counts

        counted: dict[str, int] = await with_redis(server, count)
        return counted

    async def move(self, server: RedisConfig, pairs: Sequence[tuple[str, str]]) -> list[int]:
        sources, targets = [a for a, _ in pairs], [b for _, b in pairs]

        async def script(client: Any) -> list[int]:
            moved = await client.eval(MOVE_SCRIPT, len(pairs) * 2, *sources, *targets)
            return [int(n) for n in moved]

        moved: list[int] = await with_redis(server, script)
        return moved

    def identity(self, server: RedisConfig, queue: RedisQueueConfig, keys: Sequence[str]) -> tuple[str, ...]:
        return (self.name, server.name, queue.name, *keys)


class QueueMove(QueueAction):
    supported = ("list", "zset", "rq", "celery", "sidekiq")

    def __init__(self, config: Config) -> None:
        super().__init__(
            "queue-move",
            config,
            scope="queue",
            description="Move a queue's waiting jobs to a dead-letter key, all at once; nothing is deleted",
        )
        self.dead_letter = config.actions.queue_move.dead_letter

    def describe(self) -> tuple[str, ...]:
        return (
            f"moves the waiting jobs of a Redis queue to {self.dead_letter} in one atomic step (Lua: RENAME)",
            "lists and sorted sets, RQ, Celery, Sidekiq; refuses streams, BullMQ and Bull",
        )

    def target_key(self, key: str, stamp: str) -> str:
        return self.dead_letter.replace("{key}", key).replace("{time}", stamp)

    async def prepare(self, target: Target | None, params: Mapping[str, str]) -> Prepared:
        self.check_params(params)
        server, queue, keys = self.locate(target)
        counts = await self.waiting_now(server, keys)
        total = sum(counts.values())
        if not total:
            raise ActionError(f"'{queue.name}' has no waiting jobs ({', '.join(keys)} empty): nothing to move")
        stamp = utc_stamp()
        pairs = [(key, self.target_key(key, stamp)) for key in keys if counts[key]]
        shown = [f"move {counts[key]} waiting jobs from {key} to {aside}" for key, aside in pairs]
        shown.append(
            f"Redis {server.name}: in one step (a Lua script), with the jobs that arrive until then; nothing is deleted"
        )
        if queue.kind == "rq":
            shown.append("RQ keeps each job's data under rq:job:<id>; pushed back onto the queue, they run as before")
        identity = (*self.identity(server, queue, keys), self.dead_letter)
        return Prepared(tuple(shown), partial(self._run, server, pairs), identity=identity)

    async def _run(self, server: RedisConfig, pairs: list[tuple[str, str]], emit: Emit) -> Outcome:
        try:
            moved = await self.move(server, pairs)
        except ActionError as exc:
            return Outcome(ok=False, detail=str(exc))
        for (key, aside), count in zip(pairs, moved, strict=True):
            emit("info", f"moved {count} jobs from {key} to {aside}")
        return Outcome(ok=True)


class QueueDelete(QueueAction):
    supported = ("list", "zset", "celery", "sidekiq")

    def __init__(self, config: Config) -> None:
        super().__init__(
            "queue-delete",
            config,
            scope="queue",
            description="Delete a queue's waiting jobs, after writing them to a dump file (JSON lines)",
            dangerous=True,
        )
        own = config.actions.queue_delete.dumps
        self.dumps = own if own is not None else config.state_dir() / "dumps"

    def requirement(self, target: Target | None) -> Requirement:
        # The queue's name, not the action's: typing it is looking at which queue is about to be emptied.
        return Requirement("typed", target.name if target is not None else None)

    def describe(self) -> tuple[str, ...]:
        return (
            f"writes a Redis queue's waiting jobs to {self.dumps}/QUEUE-TIME.jsonl, then deletes them",
            "lists and sorted sets, Celery, Sidekiq; refuses streams, BullMQ, Bull and RQ",
        )

    async def prepare(self, target: Target | None, params: Mapping[str, str]) -> Prepared:
        self.check_params(params)
        server, queue, keys = self.locate(target)
        counts = await self.waiting_now(server, keys)
        total = sum(counts.values())
        if not total:
            raise ActionError(f"'{queue.name}' has no waiting jobs ({', '.join(keys)} empty): nothing to delete")
        stamp = utc_stamp()
        dump = self.dumps / f"{_file_name(queue.name)}-{stamp}.jsonl"
        pairs = [(key, f"{key}:opstui-deleting:{stamp}") for key in keys if counts[key]]
        shown = (
            f"delete the {total} waiting jobs of '{queue.name}' ({', '.join(k for k, _ in pairs)}), "
            f"after writing them to {dump}",
            f"Redis {server.name}: first moved aside in one step ({', '.join(a for _, a in pairs)}), so jobs "
            "arriving meanwhile stay in the queue; deleted only once the dump is written",
        )
        return Prepared(shown, partial(self._run, server, pairs, dump), identity=self.identity(server, queue, keys))

    async def _run(self, server: RedisConfig, pairs: list[tuple[str, str]], dump: Path, emit: Emit) -> Outcome:
        try:
            moved = await self.move(server, pairs)
        except ActionError as exc:
            return Outcome(ok=False, detail=str(exc))
        aside = [b for _, b in pairs]
        emit("info", f"moved {sum(moved)} jobs aside to {', '.join(aside)}")
        try:
            written = await with_redis(server, partial(_dump, pairs, dump))
        except (ActionError, OSError) as exc:
            # Nothing is deleted without its dump: the jobs wait in the keys they were moved to.
            problem = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            return Outcome(ok=False, detail=f"not deleted: the dump failed ({problem}); the jobs are in {aside}")
        emit("info", f"wrote {written} jobs to {dump}")

        async def delete(client: Any) -> None:
            await client.delete(*aside)

        try:
            await with_redis(server, delete)
        except ActionError as exc:
            return Outcome(ok=False, detail=f"dumped to {dump}, but not deleted: {exc}; the jobs are in {aside}")
        emit("info", f"deleted {', '.join(aside)}; the jobs are in {dump}")
        return Outcome(ok=True, detail=f"dump: {dump}")


async def _dump(pairs: Sequence[tuple[str, str]], path: Path, client: Any) -> int:
    """Every job of the keys moved aside (nobody else writes them now) as JSON lines, each with the queue key it
    came from; returns how many."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    written = 0
    # The jobs are the application's data (names, phone numbers): readable by the owner only.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        for key, aside in pairs:
            zset = (await client.type(aside)).decode() == "zset"
            start = 0
            while True:
                end = start + DUMP_CHUNK - 1
                chunk = (
                    await client.zrange(aside, start, end, withscores=True)
                    if zset
                    else [(item, None) for item in await client.lrange(aside, start, end)]
                )
                for item, score in chunk:
                    out.write(json.dumps(_line(key, item, score), ensure_ascii=False) + "\n")
                written += len(chunk)
                if len(chunk) < DUMP_CHUNK:
                    break
                start += DUMP_CHUNK
        out.flush()
        os.fsync(out.fileno())
    return written


def _line(key: str, item: bytes, score: float | None) -> dict[str, Any]:
    line: dict[str, Any] = {"key": key}
    try:
        line["item"] = item.decode("utf-8")
    except UnicodeDecodeError:
        line["item_base64"] = base64.b64encode(item).decode()
    if score is not None:
        line["score"] = score
    return line


def _file_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "queue"


async def with_redis(server: RedisConfig, work: Any) -> Any:
    """Run `work(client)` on a fresh connection to the server; a Redis problem becomes ActionError in words."""
    import redis.asyncio
    from redis.exceptions import RedisError, ResponseError

    from opstui.sources.redis import redis_address

    client = redis.asyncio.Redis.from_url(
        server.url, protocol=2, socket_timeout=LOOK_TIMEOUT, socket_connect_timeout=LOOK_TIMEOUT
    )
    try:
        return await work(client)
    except ResponseError as exc:
        raise ActionError(f"redis {server.name}: {redact(str(exc))}") from None
    except (RedisError, OSError) as exc:
        raise ActionError(
            f"redis {server.name} at {redis_address(server.url)}: {redact(str(exc)) or 'no answer'}"
        ) from None
    finally:
        await client.aclose()
