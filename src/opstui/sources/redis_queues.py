"""Queue layouts on Redis: the keys each job library keeps, read with O(1) commands and turned into a depth.

Verified against real Redis 6.2 and 7.0 with the libraries themselves (see the project's queue research notes):
plain list, sorted set and stream; BullMQ 5 and 6; Bull 3 and 4; RQ 2 and 3; Celery with kombu 5; Sidekiq 6.
Every command here is O(1) or O(log N) and none writes: RQ's own `count` cleans its registries (a write), so
its live counts are rebuilt here as ZCARD minus the entries already expired, exactly as its cleanup would.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opstui.config.data import RedisQueueConfig

Command = tuple[str | bytes, ...]
"""A Redis command with its arguments, e.g. ("LLEN", "queue:incoming"); keys found by SCAN stay bytes."""

EXPECTED_TYPE = {
    "LLEN": "list",
    "LINDEX": "list",
    "ZCARD": "zset",
    "ZCOUNT": "zset",
    "HGET": "hash",
    "HLEN": "hash",
    "HEXISTS": "hash",
    "XINFO": "stream",
    "XLEN": "stream",
    "XREVRANGE": "stream",
    "GET": "string",
    "MGET": "string",
}
"""The type of key each command reads, to say "bull:q:wait is a string, not a list" after a WRONGTYPE."""


def key_of(command: Command) -> str | bytes:
    """The key a command reads (XINFO's comes after its subcommand)."""
    return command[2] if command[0] == "XINFO" else command[1]


@dataclass(slots=True)
class Replies:
    """One reader's replies by label. An error reply is recorded with its command, never raised."""

    values: Mapping[str, Any]
    plan: Sequence[tuple[str, Command]]
    """The (label, command) pairs the values answer, in order."""
    types: Mapping[str, str] = field(default_factory=dict)
    """The actual type of each key that got a WRONGTYPE reply this tick."""
    errors: list[tuple[Command, Exception]] = field(default_factory=list)

    def raw(self, label: str) -> Any:
        """The reply, or None when it is an error (which is then recorded)."""
        value = self.values[label]
        if isinstance(value, Exception):
            self.errors.append((self.command(label), value))
            return None
        return value

    def command(self, label: str) -> Command:
        return next(cmd for name, cmd in self.plan if name == label)

    def count(self, label: str) -> int | None:
        """An integer reply (a missing key counts 0), or None when the command failed."""
        value = self.values[label]
        if value.__class__ is int:
            return int(value)
        value = self.raw(label)
        if value is None:
            return None if isinstance(self.values[label], Exception) else 0
        return int(value)

    def text(self, label: str) -> str | None:
        value = self.raw(label)
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else None

    def failed_with(self, label: str, message: str) -> bool:
        """True when the reply is an error containing `message` (e.g. XINFO's "no such key"); not recorded."""
        value = self.values[label]
        return isinstance(value, Exception) and message in str(value)


def describe_errors(r: Replies) -> str | None:
    """The errors recorded while reading, one per key, as a person would want them: what is wrong with which key."""
    if not r.errors:
        return None
    said: dict[str, str] = {}
    for command, exc in r.errors:
        raw_key = key_of(command)
        key = raw_key.decode("utf-8", "replace") if isinstance(raw_key, bytes) else raw_key
        message = str(exc)
        if message.startswith("WRONGTYPE"):
            expected = EXPECTED_TYPE.get(str(command[0]), "different type")
            actual = r.types.get(key)
            said.setdefault(
                key,
                f"{key} is a {actual}, not a {expected}"
                if actual and actual != "none"
                else f"{key} holds the wrong type of value (expected a {expected})",
            )
        else:
            said.setdefault(key, f"{command[0]!s} {key}: {message}")
    return "; ".join(said.values()) or None


@dataclass(frozen=True, slots=True)
class Reading:
    depth: int | None
    parts: dict[str, int] = field(default_factory=dict)
    paused: bool | None = None
    note: str | None = None
    """Why the depth is unknown when no command failed (e.g. a stream's lag that Redis does not report)."""


def total(*counts: int | None) -> int | None:
    """The sum, or None when any part is unknown: a figure derived from a failed read is not a figure."""
    return None if any(c is None for c in counts) else sum(c for c in counts if c is not None)


def known(parts: Iterable[tuple[str, int | None]]) -> dict[str, int]:
    return {name: value for name, value in parts if value is not None}


class Layout(abc.ABC):
    """How one kind of queue lies in Redis: the commands that read it, and what their replies mean."""

    def __init__(self, config: RedisQueueConfig) -> None:
        self.config = config
        self._fixed = self.fixed()

    def commands(self, now: float) -> list[tuple[str, Command]]:
        """(label, command) pairs; identical commands of several queues are sent once."""
        return self._fixed + self.timed(now)

    @abc.abstractmethod
    def fixed(self) -> list[tuple[str, Command]]:
        """The commands that are the same every tick (built once: a thousand queues are thousands of them)."""

    def timed(self, now: float) -> list[tuple[str, Command]]:
        """The commands that take the current time (counts of what is due)."""
        return []

    @abc.abstractmethod
    def read(self, r: Replies, now: float) -> Reading: ...

    def waiting(self) -> tuple[str, ...]:
        """The keys whose whole content is the waiting jobs (the built-in queue actions move or delete them);
        empty when the waiting jobs are not whole keys of their own (a stream, BullMQ, Bull)."""
        return ()


class ListLayout(Layout):
    def waiting(self) -> tuple[str, ...]:
        return (self.config.redis_key,)

    def fixed(self) -> list[tuple[str, Command]]:
        return [("len", ("LLEN", self.config.redis_key))]

    def read(self, r: Replies, now: float) -> Reading:
        return Reading(r.count("len"))


class ZsetLayout(Layout):
    def waiting(self) -> tuple[str, ...]:
        return (self.config.redis_key,)

    def fixed(self) -> list[tuple[str, Command]]:
        return [("len", ("ZCARD", self.config.redis_key))]

    def timed(self, now: float) -> list[tuple[str, Command]]:
        return [("due", ("ZCOUNT", self.config.redis_key, "-inf", repr(now)))] if self.config.due else []

    def read(self, r: Replies, now: float) -> Reading:
        due = known([("due", r.count("due"))]) if self.config.due else {}
        return Reading(r.count("len"), due)


class StreamLayout(Layout):
    """A stream read by consumer groups: the depth is the group's lag (entries not yet delivered to it).

    Redis 7 reports `lag` per group, but as nil when it cannot compute it (entries deleted with XDEL); Redis 6.2
    does not report it at all. Then the lag is 0 only if the group has read past the newest entry, and otherwise
    unknown: shown as unknown, never as 0.
    """

    def fixed(self) -> list[tuple[str, Command]]:
        key = self.config.redis_key
        return [
            ("entries", ("XLEN", key)),
            ("groups", ("XINFO", "GROUPS", key)),
            ("newest", ("XREVRANGE", key, "+", "-", "COUNT", "1")),
        ]

    def read(self, r: Replies, now: float) -> Reading:
        entries = r.count("entries")
        if entries is None:
            return Reading(None)
        # XINFO GROUPS says "no such key" where XLEN says 0: an empty stream, nobody reading it yet.
        groups = [] if r.failed_with("groups", "no such key") else [_pairs(g) for g in (r.raw("groups") or [])]
        newest = r.raw("newest")
        newest_id = _stream_id(newest[0][0]) if newest else None
        wanted = self.config.group
        if wanted is not None:
            groups = [g for g in groups if _decode(g.get("name")) == wanted]
            if not groups:
                return Reading(None, {"entries": entries}, note=f"stream {self.config.redis_key} has no group {wanted}")
        elif not groups:
            return Reading(entries, {"entries": entries})  # nobody consumes it: every entry waits
        lags = [(_lag(g, newest_id), g) for g in groups]
        # The group furthest behind decides; a group whose lag is unknown could be anywhere.
        lag, group = max(lags, key=lambda lg: float("inf") if lg[0] is None else lg[0])
        parts = known(
            [
                ("waiting", lag),
                ("pending", int(group.get("pending", 0))),
                ("consumers", int(group.get("consumers", 0))),
                ("entries", entries),
            ]
        )
        note = None
        if lag is None:
            name = _decode(group.get("name"))
            note = (
                f"lag of group {name} unknown: Redis before 7.0 does not report it and the group is behind"
                if "lag" not in group
                else f"lag of group {name} unknown: Redis cannot compute it after entries were deleted"
            )
        return Reading(lag, parts, note=note)


def _lag(group: dict[str, Any], newest_id: tuple[int, int] | None) -> int | None:
    lag = group.get("lag")
    if lag is not None:
        return int(lag)
    delivered = _stream_id(group.get("last-delivered-id"))
    return 0 if newest_id is None or (delivered is not None and delivered >= newest_id) else None


def _stream_id(value: Any) -> tuple[int, int] | None:
    """A stream entry id ("1714557600000-3") as (ms, seq), so ids compare in order."""
    try:
        ms, _, seq = _decode(value).partition("-")
        return int(ms), int(seq or 0)
    except ValueError:
        return None


def _pairs(reply: Any) -> dict[str, Any]:
    """A RESP2 flat [name, value, name, value, ...] reply as a dict."""
    if not isinstance(reply, list):
        return {}
    return {_decode(reply[i]): reply[i + 1] for i in range(0, len(reply) - 1, 2)}


def _decode(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class BullMQLayout(Layout):
    """BullMQ 5.x/6.x: waiting = wait + paused (5.x moves paused jobs there; 6.x leaves them in wait, but a
    queue paused under 5.x keeps its list), prioritized separately; the paused flag is `meta.paused`."""

    def fixed(self) -> list[tuple[str, Command]]:
        b = f"{self.config.key_prefix}:{self.config.queue_name}"
        return [
            ("wait", ("LLEN", f"{b}:wait")),
            ("paused", ("LLEN", f"{b}:paused")),
            ("prioritized", ("ZCARD", f"{b}:prioritized")),
            ("active", ("LLEN", f"{b}:active")),
            ("delayed", ("ZCARD", f"{b}:delayed")),
            ("failed", ("ZCARD", f"{b}:failed")),
            ("completed", ("ZCARD", f"{b}:completed")),
            ("waiting_children", ("ZCARD", f"{b}:waiting-children")),
            ("meta", ("HGET", f"{b}:meta", "paused")),
            ("tail", ("LINDEX", f"{b}:wait", "-1")),
        ]

    def read(self, r: Replies, now: float) -> Reading:
        wait, paused_list = r.count("wait"), r.count("paused")
        tail = r.text("tail")
        if wait and tail and tail.startswith("0:"):
            wait -= 1  # a BullMQ <= 4 marker, not a job (getJobCounts discounts it too)
        waiting, prioritized = total(wait, paused_list), r.count("prioritized")
        parts = known(
            [
                ("waiting", waiting),
                ("prioritized", prioritized),
                ("active", r.count("active")),
                ("delayed", r.count("delayed")),
                ("failed", r.count("failed")),
                ("completed", r.count("completed")),
                ("waiting_children", r.count("waiting_children")),
            ]
        )
        meta = r.values["meta"]
        paused = None if isinstance(meta, Exception) else r.text("meta") == "1"
        return Reading(total(waiting, prioritized), parts, paused)


class BullLayout(Layout):
    """Bull 3.x/4.x: prioritized jobs sit inside wait/paused (`:priority` is only an index, never counted)."""

    def fixed(self) -> list[tuple[str, Command]]:
        b = f"{self.config.key_prefix}:{self.config.queue_name}"
        return [
            ("wait", ("LLEN", f"{b}:wait")),
            ("paused", ("LLEN", f"{b}:paused")),
            ("active", ("LLEN", f"{b}:active")),
            ("delayed", ("ZCARD", f"{b}:delayed")),
            ("failed", ("ZCARD", f"{b}:failed")),
            ("completed", ("ZCARD", f"{b}:completed")),
            ("meta_paused", ("EXISTS", f"{b}:meta-paused")),
            ("meta_hash_paused", ("HEXISTS", f"{b}:meta", "paused")),
        ]

    def read(self, r: Replies, now: float) -> Reading:
        waiting = total(r.count("wait"), r.count("paused"))
        parts = known(
            [
                ("waiting", waiting),
                ("active", r.count("active")),
                ("delayed", r.count("delayed")),
                ("failed", r.count("failed")),
                ("completed", r.count("completed")),
            ]
        )
        flags = [r.count("meta_paused"), r.count("meta_hash_paused")]
        paused = None if None in flags else any(flags)
        return Reading(waiting, parts, paused)


class RQLayout(Layout):
    """RQ 1.x-3.x: the queue list plus its registries. The registries' scores are expiry times; RQ's cleanup
    drops entries with scores in [0, now] before it counts, so the live count is ZCARD - ZCOUNT(0, now)."""

    def waiting(self) -> tuple[str, ...]:
        return (f"{self.config.key_prefix}:queue:{self.config.queue_name}",)

    def fixed(self) -> list[tuple[str, Command]]:
        p, q = self.config.key_prefix, self.config.queue_name
        return [
            ("queued", ("LLEN", *self.waiting())),
            ("started", ("ZCARD", f"{p}:wip:{q}")),
            ("failed", ("ZCARD", f"{p}:failed:{q}")),
            ("finished", ("ZCARD", f"{p}:finished:{q}")),
            ("scheduled", ("ZCARD", f"{p}:scheduled:{q}")),
            ("deferred", ("ZCARD", f"{p}:deferred:{q}")),
            ("canceled", ("ZCARD", f"{p}:canceled:{q}")),
            ("suspended", ("EXISTS", f"{p}:suspended")),
        ]

    def timed(self, now: float) -> list[tuple[str, Command]]:
        p, q, t = self.config.key_prefix, self.config.queue_name, str(int(now))
        return [
            ("started_expired", ("ZCOUNT", f"{p}:wip:{q}", "0", t)),
            ("failed_expired", ("ZCOUNT", f"{p}:failed:{q}", "0", t)),
            ("finished_expired", ("ZCOUNT", f"{p}:finished:{q}", "0", t)),
            ("scheduled_due", ("ZCOUNT", f"{p}:scheduled:{q}", "-inf", t)),
        ]

    def read(self, r: Replies, now: float) -> Reading:
        def live(registry: str) -> int | None:
            all_, expired = r.count(registry), r.count(f"{registry}_expired")
            return None if all_ is None or expired is None else all_ - expired

        queued = r.count("queued")
        parts = known(
            [
                ("waiting", queued),
                ("active", live("started")),
                ("scheduled", r.count("scheduled")),
                ("deferred", r.count("deferred")),
                ("failed", live("failed")),
                ("finished", live("finished")),
                ("canceled", r.count("canceled")),
                # Started jobs past their expiry: their worker died; RQ moves them to failed on its next cleanup.
                ("abandoned", r.count("started_expired")),
                # Due but not yet enqueued: staying above 0 means no worker runs RQ's scheduler.
                ("scheduled_due", r.count("scheduled_due")),
            ]
        )
        suspended = r.count("suspended")
        return Reading(queued, parts, None if suspended is None else suspended > 0)


class CeleryLayout(Layout):
    """Celery on kombu's Redis transport: one list per priority step; `unacked` is shared by the broker db."""

    def __init__(self, config: RedisQueueConfig) -> None:
        q, sep = config.queue_name, config.sep
        self.lists = [(s, q if s == 0 else f"{q}{sep}{s}") for s in config.priority_steps]
        super().__init__(config)

    def waiting(self) -> tuple[str, ...]:
        return tuple(self.config.key_prefix + key for _, key in self.lists)

    def fixed(self) -> list[tuple[str, Command]]:
        lengths = zip(self.lists, self.waiting(), strict=True)
        cmds: list[tuple[str, Command]] = [(f"priority_{s}", ("LLEN", key)) for (s, _), key in lengths]
        return [*cmds, ("unacked", ("HLEN", f"{self.config.key_prefix}unacked"))]

    def timed(self, now: float) -> list[tuple[str, Command]]:
        cutoff = repr(now - self.config.visibility_timeout)
        return [("overdue", ("ZCOUNT", f"{self.config.key_prefix}unacked_index", "-inf", cutoff))]

    def read(self, r: Replies, now: float) -> Reading:
        lists = [(f"priority_{s}", r.count(f"priority_{s}")) for s, _ in self.lists]
        parts = known(lists if len(lists) > 1 else [])
        # Reserved by workers (prefetched, ETA/countdown, acks_late running), for every queue of this db.
        parts |= known([("unacked", r.count("unacked")), ("unacked_overdue", r.count("overdue"))])
        return Reading(total(*(n for _, n in lists)), parts)


class SidekiqLayout(Layout):
    """Sidekiq: `queue:<name>` (behind a redis-namespace prefix before 7.0); latency from the oldest job."""

    def waiting(self) -> tuple[str, ...]:
        ns = f"{self.config.key_prefix}:" if self.config.key_prefix else ""
        return (f"{ns}queue:{self.config.queue_name}",)

    def fixed(self) -> list[tuple[str, Command]]:
        (key,) = self.waiting()
        return [("enqueued", ("LLEN", key)), ("oldest", ("LINDEX", key, "-1"))]

    def read(self, r: Replies, now: float) -> Reading:
        parts: dict[str, int] = {}
        oldest = r.text("oldest")
        if oldest:
            try:
                enqueued_at = json.loads(oldest).get("enqueued_at")
            except (ValueError, AttributeError):
                enqueued_at = None
            if isinstance(enqueued_at, int | float):
                # Sidekiq < 8 stores float seconds, 8.x integer milliseconds.
                seconds = enqueued_at / 1000 if isinstance(enqueued_at, int) and enqueued_at > 1e11 else enqueued_at
                parts["latency_s"] = max(0, int(now - seconds))
        return Reading(r.count("enqueued"), parts)


LAYOUTS: dict[str, type[Layout]] = {
    "list": ListLayout,
    "zset": ZsetLayout,
    "stream": StreamLayout,
    "bullmq": BullMQLayout,
    "bull": BullLayout,
    "rq": RQLayout,
    "celery": CeleryLayout,
    "sidekiq": SidekiqLayout,
}


def layout_for(config: RedisQueueConfig) -> Layout:
    return LAYOUTS[config.kind](config)
