"""A Redis server: its queues, memory, locks, last activity and dispatch counters, in one round trip per tick.

Every command of every item is sent in one pipeline (identical commands once) and each reply is read on its
own: an error reply (a key of the wrong type, a command the ACL forbids) becomes that item's error while the
rest of the server reads fine; only a connection problem fails the whole source.

The round trip runs in a worker thread over one blocking connection of our own (`_resp`: redis-py costs 20 MB
and half a second to import, and its asyncio pipeline three times the CPU per command), with each command
encoded once and all the replies parsed in one pass: a thousand queues are several thousand commands
(see docs/performance.md).
"""

from __future__ import annotations

import abc
import fnmatch
import re
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from opstui.config.data import RedisActivityConfig, RedisConfig, RedisDispatchConfig, RedisLockConfig
from opstui.errors import SourceError, SourceTimeout, SourceUnavailable
from opstui.model import ActivityInfo, DispatchInfo, Facts, LockInfo, LockState, QueueInfo, RedisMemory
from opstui.sources._resp import (
    Address,
    AuthFailed,
    ConnectFailed,
    Connection,
    Loading,
    NoAnswer,
    RespError,
    SetupRefused,
    encode,
)
from opstui.sources.base import Source, sections
from opstui.sources.redis_queues import Command, Layout, Replies, describe_errors, key_of, layout_for
from opstui.units import format_duration, parse_time

Item = QueueInfo | RedisMemory | LockInfo | ActivityInfo | DispatchInfo
Plan = list[tuple[str, Command]]
Trip = Callable[[Plan], Replies]
"""Another round trip within the tick, for commands that need this tick's replies first."""

WARMUP_SCANS = 100
"""On the first tick a key pattern is scanned up to this many SCAN calls, so that a one-shot `opstui check`
sees the newest key; after that one SCAN call per tick continues the pass."""


class Reader(abc.ABC):
    """One thing read from the server: its commands for this tick and what their replies mean."""

    @abc.abstractmethod
    def commands(self, now: float) -> Plan: ...

    @abc.abstractmethod
    def read(self, r: Replies, now: float, trip: Trip) -> Item | None:
        """The item, or None when there is nothing to show (INFO forbidden by an ACL)."""


class QueueReader(Reader):
    def __init__(self, source: str, layout: Layout) -> None:
        self.source = source
        self.layout = layout

    def commands(self, now: float) -> Plan:
        return self.layout.commands(now)

    def read(self, r: Replies, now: float, trip: Trip) -> Item | None:
        config = self.layout.config
        reading = self.layout.read(r, now)
        error = describe_errors(r) or reading.note
        return QueueInfo(
            key=f"{self.source}/{config.name}",
            name=config.name,
            kind=config.kind,
            depth=reading.depth,
            source=self.source,
            parts=reading.parts,
            paused=reading.paused,
            warn=config.warn,
            crit=config.crit,
            error=error,
        )


class MemoryReader(Reader):
    def __init__(self, source: str, name: str) -> None:
        self.source = source
        self.name = name

    def commands(self, now: float) -> Plan:
        return [("info", ("INFO", "memory"))]

    def read(self, r: Replies, now: float, trip: Trip) -> Item | None:
        text = r.text("info")
        if text is None:
            return None
        info = dict(re.findall(r"^(\w+):(.*?)\r?$", text, re.MULTILINE))
        limit = int(info.get("maxmemory", 0))
        return RedisMemory(
            name=self.name, used_bytes=int(info.get("used_memory", 0)), source=self.source, max_bytes=limit or None
        )


class LockReader(Reader):
    """A lock key: its value is the holder and its remaining TTL the lock's expiry (Redis deletes it then)."""

    def __init__(self, source: str, config: RedisLockConfig) -> None:
        self.source = source
        self.config = config

    def commands(self, now: float) -> Plan:
        return [("holder", ("GET", self.config.key)), ("pttl", ("PTTL", self.config.key))]

    def read(self, r: Replies, now: float, trip: Trip) -> Item | None:
        holder, pttl = r.text("holder"), r.count("pttl")
        error = describe_errors(r)
        expected = self.config.expected_holder
        if error:
            state = LockState.UNKNOWN
        elif holder is None:
            state = LockState.FREE
        elif expected is not None and not fnmatch.fnmatchcase(holder, expected):
            state = LockState.UNEXPECTED
        else:
            state = LockState.HELD
        return LockInfo(
            key=f"{self.source}/{self.config.name}",
            name=self.config.name,
            state=state,
            source=self.source,
            holder=holder,
            expires_at=now + pttl / 1000.0 if holder is not None and pttl and pttl > 0 else None,
            expected_holder=expected,
            error=error,
        )


class ActivityReader(Reader):
    """Last activity from one key, or the newest of the keys matching a pattern.

    A pattern is followed with a bounded, resumable SCAN: one call of `scan_per_tick` per tick (plus a warm-up
    on the first tick), never KEYS. The `max_keys` newest keys found are re-read every tick in the same round
    trip, so activity on a known key shows at once; a key that appears is found when the pass reaches it.
    """

    def __init__(self, source: str, config: RedisActivityConfig) -> None:
        self.source = source
        self.config = config
        self.newest: dict[bytes, float] = {}
        self.cursor = b"0"
        self.passes = 0
        self.scans_left = WARMUP_SCANS
        self.found: list[bytes] = []

    def _reads(self, keys: Sequence[bytes | str]) -> Plan:
        if self.config.by == "value":
            return [("values", ("MGET", *keys))] if keys else []
        return [(f"pttl {i}", ("PTTL", key)) for i, key in enumerate(keys)]

    def _times(self, r: Replies, keys: Sequence[bytes], now: float) -> list[float | None]:
        if not keys:
            return []
        if self.config.by == "value":
            values = r.raw("values") or [None] * len(keys)
            return [parse_time(v) for v in values]
        ttl = self.config.ttl or 0.0
        times: list[float | None] = []
        for i in range(len(keys)):
            pttl = r.count(f"pttl {i}")
            times.append(now - (ttl - pttl / 1000.0) if pttl is not None and pttl > 0 else None)
        return times

    def _scan(self) -> Plan:
        pattern = self.config.pattern or ""
        return [("scan", ("SCAN", self.cursor, "MATCH", pattern, "COUNT", str(self.config.scan_per_tick)))]

    def commands(self, now: float) -> Plan:
        if self.config.key is not None:
            return self._reads([self.config.key])
        return self._scan() + self._reads(list(self.newest))

    def read(self, r: Replies, now: float, trip: Trip) -> Item | None:
        if self.config.key is not None:
            last = self._times(r, [self.config.key.encode()], now)[0]
            detail = f"key {self.config.key}"
        else:
            self._take(r, list(self.newest), now)
            while plan := self._follow_up():
                found, self.found = self.found, []
                self._take(trip(plan), found, now)
            last = max(self.newest.values(), default=None)
            detail = f"newest of {len(self.newest)} keys matching {self.config.pattern}"
            if self.passes == 0:
                detail += " (first scan of the keyspace still under way)"
        return ActivityInfo(
            key=f"{self.source}/{self.config.name}",
            name=self.config.name,
            source=self.source,
            last_at=last,
            max_age=self.config.max_age,
            detail=detail,
            error=describe_errors(r),
        )

    def _take(self, r: Replies, keys: list[bytes], now: float) -> None:
        for key, at in zip(keys, self._times(r, keys, now), strict=True):
            if at is None:
                self.newest.pop(key, None)  # gone (expired or deleted), or no longer a time
            else:
                self.newest[key] = at
        if "scan" in r.values:
            reply = r.raw("scan")
            if reply is not None:
                self.cursor = reply[0]
                self.found += [k for k in reply[1] if k not in self.newest]
                if self.cursor == b"0":
                    self.passes += 1
        if len(self.newest) > self.config.max_keys:
            keep = sorted(self.newest.items(), key=lambda kv: kv[1], reverse=True)[: self.config.max_keys]
            self.newest = dict(keep)

    def _follow_up(self) -> Plan:
        """Reads of the keys the scan just found, and the warm-up's next SCAN call until the first pass is done."""
        plan = self._reads(self.found)
        if self.passes == 0 and self.scans_left > 0:
            self.scans_left -= 1
            plan += self._scan()
        return plan


class CounterReader(Reader):
    """Dispatch counts kept by the application in Redis counters (INCR)."""

    def __init__(self, source: str, config: RedisDispatchConfig) -> None:
        self.source = source
        self.config = config

    def commands(self, now: float) -> Plan:
        keys = [("processed", self.config.processed), ("sent", self.config.sent)]
        keys += [
            (label, key) for label, key in (("failed", self.config.failed), ("started", self.config.started)) if key
        ]
        return [(label, ("GET", key)) for label, key in keys]

    def read(self, r: Replies, now: float, trip: Trip) -> Item | None:
        counts: dict[str, int] = {}
        problems = []
        for label in ("processed", "sent", "failed"):
            text = r.text(label) if label in r.values else None
            try:
                counts[label] = 0 if text is None else int(float(text))
            except ValueError:
                counts[label] = 0
                problems.append(f"{r.command(label)[1]!s} holds {(text or '')[:40]!r}, not a number")
        started = parse_time(r.raw("started")) if "started" in r.values else None
        error = describe_errors(r) or ("; ".join(problems) if problems else None)
        return DispatchInfo(
            key=f"{self.source}/{self.config.name}",
            name=self.config.name,
            source=self.source,
            processed=counts["processed"],
            sent=counts["sent"],
            failed=counts["failed"],
            run_started_at=started,
            error=error,
        )


class RedisSource(Source):
    kind = "redis"

    def __init__(self, config: RedisConfig) -> None:
        # Socket timeouts end a round trip at `timeout`; the engine's own timeout is only the backstop.
        super().__init__(f"redis {config.name}", interval=config.interval, timeout=config.timeout + 1.0)
        self.config = config
        self.address = redis_address(config.url)
        self.detail = f"{self.address}, one round trip"
        name = self.name
        self.readers: list[Reader] = [QueueReader(name, layout_for(q)) for q in config.queues]
        if config.memory:
            self.readers.append(MemoryReader(name, config.name))
        self.readers += [LockReader(name, lock) for lock in config.locks]
        self.readers += [ActivityReader(name, activity) for activity in config.activity]
        self.readers += [CounterReader(name, counters) for counters in config.dispatch]
        self.provides = sections(
            queues=config.queues,
            redis_memory=config.memory,
            locks=config.locks,
            activity=config.activity,
            dispatch=config.dispatch,
        )
        self._connection: Connection | None = None
        self._encoded: dict[Command, bytes] = {}

    async def collect(self) -> Facts:
        # redis-py's synchronous path is the cheap one per command; keep it off the event loop.
        return await self.in_thread(self._collect)

    def _collect(self) -> Facts:
        now = time.time()
        plans = [(reader, reader.commands(now)) for reader in self.readers]
        index: dict[Command, int] = {}  # each distinct command once, in order
        slots = [[index.setdefault(cmd, len(index)) for _, cmd in plan] for _, plan in plans]
        values = self.round_trip(list(index))
        types = self._types_of_wrong_keys(index, values)

        def trip(plan: Plan) -> Replies:
            found = self.round_trip([cmd for _, cmd in plan])
            return Replies({label: found[i] for i, (label, _) in enumerate(plan)}, plan, types)

        items = [
            reader.read(
                Replies({label: values[i] for (label, _), i in zip(plan, at, strict=True)}, plan, types), now, trip
            )
            for (reader, plan), at in zip(plans, slots, strict=True)
        ]
        return Facts(
            queues=tuple(i for i in items if isinstance(i, QueueInfo)),
            redis_memory=tuple(i for i in items if isinstance(i, RedisMemory)),
            locks=tuple(i for i in items if isinstance(i, LockInfo)),
            activity=tuple(i for i in items if isinstance(i, ActivityInfo)),
            dispatch=tuple(i for i in items if isinstance(i, DispatchInfo)),
        )

    def _types_of_wrong_keys(self, index: dict[Command, int], values: list[Any]) -> dict[str, str]:
        """The actual type of each key that got a WRONGTYPE, so its error can say what it is (error path only)."""
        wrong = sorted(
            {_text(key_of(cmd)) for cmd, i in index.items() if values[i].__class__ is not int and _wrongtype(values[i])}
        )
        if not wrong:
            return {}
        found = self.round_trip([("TYPE", key) for key in wrong])
        return {key: _text(kind) for key, kind in zip(wrong, found, strict=True) if not isinstance(kind, Exception)}

    def round_trip(self, commands: Sequence[Command]) -> list[Any]:
        """Send the commands in one write and read every reply, in order; an error reply stays a reply."""
        previous, encoded = self._encoded, {}
        for cmd in commands:
            encoded[cmd] = previous.get(cmd) or encode(cmd)
        self._encoded = encoded
        payload = b"".join([encoded[cmd] for cmd in commands])
        if self._connection is None:
            try:
                address = Address.from_url(self.config.url)
            except RespError as exc:
                raise self._failure(exc) from None
            self._connection = Connection(address, timeout=self.config.timeout)
        try:
            return self._connection.round_trip(payload, len(commands))
        except RespError as exc:
            raise self._failure(exc) from None

    def _failure(self, exc: RespError) -> SourceError:
        text = str(exc).rstrip(".")
        where = self.address
        if isinstance(exc, AuthFailed):
            if "NOAUTH" in text:
                return SourceUnavailable(
                    f"the server at {where} needs a password; write it into the url before the host "
                    "(see [[redis]] url in config.example.toml)"
                )
            return SourceUnavailable(f"authentication failed at {where}: wrong password or user ({text})")
        if isinstance(exc, NoAnswer):
            return SourceTimeout(f"no answer from {where} within {format_duration(self.config.timeout)}")
        if isinstance(exc, Loading):
            return SourceUnavailable(f"the server at {where} is still loading its data into memory")
        if isinstance(exc, SetupRefused) and "DB index" in text:
            db = Address.from_url(self.config.url).db
            return SourceUnavailable(f"the server at {where} has no database {db} ({text})")
        if isinstance(exc, SetupRefused):
            return SourceUnavailable(f"the server at {where} refused the connection set-up: {text}")
        if isinstance(exc, ConnectFailed):
            if "refused" in text:
                return SourceUnavailable(f"connection refused at {where}")
            if "name resolution" in text:
                return SourceUnavailable(f"cannot resolve the host of {where}")
            if "No such file" in text:
                return SourceUnavailable(f"no Redis socket at {where}")
            return SourceUnavailable(f"cannot reach {where}: {text}")
        return SourceUnavailable(f"connection to {where} lost: {text}")

    async def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _wrongtype(value: Any) -> bool:
    return isinstance(value, Exception) and str(value).startswith("WRONGTYPE")


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def redis_address(url: str) -> str:
    """`host:port`, or the socket path, of a Redis URL: where it is, without the password."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname or '127.0.0.1'}:{parts.port or 6379}"
