"""Who leads: one daemon alone always does; several sharing a PostgreSQL database elect one with a lease.

The lease is one row in the shared database (`leases`). A daemon takes it when it is free or expired, and
renews it every third of its length; every time it changes hands its fencing token goes up by one. All times
are the database's clock, so hosts whose clocks disagree still agree on when a lease ends. A follower looks
again as soon as the lease it saw would expire, so it takes over within the lease's length of the leader's last
renewal; a leader that stops releases the lease and a follower takes over within a third of it.

A leader stops trusting its lease a little before the database would let someone else take it (it counts
from when it *sent* its last successful renewal), and the shared store checks the token on every leader-only
write (`Store.transaction(fenced=True)`): a leader that was paused or cut off and comes back cannot queue,
claim or send anything once another has taken over.

For other parts of the daemon (the Telegram bot): `leadership.leading`, `leadership.leader`,
`leadership.on_change(async callback)`, and `leadership.while_leading(name, work)`, which runs `work()` while
this daemon leads and cancels it as soon as it stops leading.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from opstui.redact import redact
from opstui.state import Fence, Store
from opstui.units import format_duration

log = logging.getLogger("opstui.daemon.leader")

LEASE_NAME = "leader"
WORK_RESTART = 5.0
"""Seconds before work run `while_leading` is started again after it failed."""
WORK_STOP_BUDGET = 2.0

Listener = Callable[[bool], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class LeaderInfo:
    """The daemon that leads, as this one last saw it."""

    instance: str
    host: str
    pid: int
    token: int | None
    since: float
    this: bool
    """Whether it is this daemon."""

    @property
    def name(self) -> str:
        """How the TUI's header names it: its instance, and its host when that says more."""
        return self.instance if self.instance == self.host else f"{self.instance} on {self.host}"

    def describe(self) -> str:
        token = f", token {self.token}" if self.token is not None else ""
        return f"{self.name} (pid {self.pid}{token})"


class Leadership(abc.ABC):
    """Whether this daemon leads, who does, and work that runs only while it leads."""

    shared: ClassVar[bool]
    """True when several daemons may run (a lease decides); False for a daemon alone, which always leads."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._work: dict[str, _Work] = {}
        self._running = False

    @property
    @abc.abstractmethod
    def leading(self) -> bool: ...

    @property
    @abc.abstractmethod
    def leader(self) -> LeaderInfo | None:
        """Who leads; None while that is unknown (the shared database cannot be reached)."""

    @property
    def token(self) -> int | None:
        """The fencing token of the lease this daemon holds; None when it does not lead or leads alone."""
        leader = self.leader
        return leader.token if leader is not None and leader.this and self.leading else None

    @property
    def problem(self) -> str | None:
        """Why the leader is unknown, if it is."""
        return None

    def describe(self) -> str:
        """One line for /status, the log and the TUI: "leading (token 7)", "standby: x leads (...)"."""
        leader = self.leader
        if not self.shared:
            return "leading (a single daemon)"
        if self.leading and leader is not None:
            return f"leading (token {leader.token})"
        if leader is None:
            return f"standby: the leader is unknown ({self.problem or 'not read yet'})"
        return f"standby: {leader.describe()} leads"

    def on_change(self, listener: Listener) -> Callable[[], None]:
        """Await `listener(leading)` whenever this daemon starts or stops leading; returns an unsubscribe."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def while_leading(self, name: str, work: Callable[[], Awaitable[None]]) -> None:
        """Run `work()` while this daemon leads: started when it starts leading (now, if it does), cancelled when
        it stops leading or the daemon stops, started again `WORK_RESTART` seconds after it fails."""
        job = _Work(name, work)
        self._work[name] = job
        if self.leading and self._running:
            job.start()

    async def start(self) -> None:
        self._running = True
        if self.leading:
            self._start_work()

    async def stop(self) -> None:
        self._running = False
        await self._stop_work()

    async def stop_work(self) -> None:
        """Stop the work run while leading, and start none any more (the first step of a daemon stopping)."""
        self._running = False
        await self._stop_work()

    async def _changed(self, leading: bool) -> None:
        if not leading:
            await self._stop_work()
        for listener in list(self._listeners):
            try:
                await listener(leading)
            except Exception:
                log.exception("a leadership listener failed")
        if leading and self._running:
            self._start_work()

    def _start_work(self) -> None:
        for job in self._work.values():
            job.start()

    async def _stop_work(self) -> None:
        await asyncio.gather(*(job.stop() for job in self._work.values()))


class _Work:
    def __init__(self, name: str, work: Callable[[], Awaitable[None]]) -> None:
        self.name = name
        self.work = work
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    async def _run(self) -> None:
        while True:
            try:
                await self.work()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s failed; starting it again in %.0fs", self.name, WORK_RESTART)
            await asyncio.sleep(WORK_RESTART)

    async def stop(self) -> None:
        task, self.task = self.task, None
        if task is None or task.done():
            return
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=WORK_STOP_BUDGET)
        if not done:
            log.warning("%s did not stop within %.0fs of being cancelled", self.name, WORK_STOP_BUDGET)


class Alone(Leadership):
    """A daemon with no high availability configured: it always leads, and nothing is fenced."""

    shared = False

    def __init__(self, *, instance: str, host: str, pid: int, started_at: float) -> None:
        super().__init__()
        self._info = LeaderInfo(instance=instance, host=host, pid=pid, token=None, since=started_at, this=True)

    @property
    def leading(self) -> bool:
        return True

    @property
    def leader(self) -> LeaderInfo:
        return self._info


# One statement, so taking and renewing cannot race: insert the lease, or take it over if it is ours or has
# expired (a new holder gets the next token), and say who holds it either way, with the time left on it.
ACQUIRE = """
WITH clock AS (SELECT extract(epoch FROM clock_timestamp())::float8 AS now),
attempt AS (
    INSERT INTO leases AS l (name, holder, token, expires_at, acquired_at, renewed_at, about)
    SELECT $1, $2, 1, now + $3::float8, now, now, $4 FROM clock
    ON CONFLICT (name) DO UPDATE SET
        token = CASE WHEN l.holder = excluded.holder AND l.expires_at > excluded.renewed_at
                     THEN l.token ELSE l.token + 1 END,
        acquired_at = CASE WHEN l.holder = excluded.holder AND l.expires_at > excluded.renewed_at
                           THEN l.acquired_at ELSE excluded.acquired_at END,
        holder = excluded.holder,
        expires_at = excluded.expires_at,
        renewed_at = excluded.renewed_at,
        about = excluded.about
    WHERE l.holder = excluded.holder OR l.expires_at <= excluded.renewed_at
    RETURNING holder, token, expires_at, acquired_at, about
)
SELECT a.holder, a.token, a.expires_at - c.now AS remaining, a.acquired_at, a.about, true AS won
FROM attempt a, clock c
UNION ALL
SELECT l.holder, l.token, l.expires_at - c.now, l.acquired_at, l.about, false
FROM leases l, clock c
WHERE l.name = $1 AND NOT EXISTS (SELECT 1 FROM attempt)
"""
RELEASE = "UPDATE leases SET expires_at = extract(epoch FROM clock_timestamp()) WHERE name = $1 AND holder = $2"


class PostgresLease(Leadership):
    """The lease in the shared PostgreSQL database; `stores` get this daemon's fence while it leads."""

    shared = True

    def __init__(
        self,
        dsn: str,
        *,
        lease: float,
        timeout: float,
        about: Mapping[str, Any],
        stores: Sequence[Store] = (),
    ) -> None:
        super().__init__()
        self.dsn = dsn
        self.lease = lease
        self.timeout = min(timeout, lease / 3)
        self.about = dict(about)
        self.holder = f"{about['instance']}@{about['host']}:{about['pid']}:{secrets.token_hex(4)}"
        self.stores = list(stores)
        self.margin = min(1.0, lease / 10)
        """How much sooner than the database a leader stops trusting its lease (clock drift, a slow answer)."""
        self._conn: Any = None
        self._leading = False
        self._leader: LeaderInfo | None = None
        self._fence: Fence | None = None
        self._fence_token: int | None = None
        self._problem: str | None = None
        self._next = 0.0
        self._task: asyncio.Task[None] | None = None

    @property
    def leading(self) -> bool:
        return self._leading

    @property
    def leader(self) -> LeaderInfo | None:
        return self._leader

    @property
    def problem(self) -> str | None:
        return self._problem

    async def start(self) -> None:
        """Try once, so the daemon starts knowing its role when the database answers; then keep at it."""
        await self._attempt()
        await super().start()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="leader lease")

    async def stop(self) -> None:
        """Stop work run while leading, and hand the lease over at once (a follower takes it at its next look)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await super().stop()
        if self._leading:
            self._leading = False
            self._set_fence(None)
            try:
                conn = await self._connection()
                await conn.execute(RELEASE, LEASE_NAME, self.holder, timeout=min(1.0, self.timeout))
                log.info("released the lead")
            except Exception as exc:  # the lease then simply runs out
                log.warning("could not release the lead (it expires within %s): %s", self._left(), _reason(exc))
        await self._close()

    async def _run(self) -> None:
        while True:
            now = time.monotonic()
            wake = self._next
            if self._leading and self._fence is not None:
                wake = min(wake, self._fence.valid_until)
            await asyncio.sleep(max(0.0, wake - now))
            if self._leading and self._fence is not None and time.monotonic() >= self._fence.valid_until:
                log.warning("lost the lead: the lease could not be renewed in time (%s)", self._problem or "?")
                await self._lose()
            if time.monotonic() >= self._next:
                await self._attempt()

    async def _attempt(self) -> None:
        sent = time.monotonic()
        try:
            conn = await self._connection()
            row = await conn.fetchrow(
                ACQUIRE, LEASE_NAME, self.holder, self.lease, json.dumps(self.about), timeout=self.timeout
            )
        except Exception as exc:
            problem = _reason(exc)
            if problem != self._problem:
                log.warning("cannot reach the leader lease in the shared database: %s", problem)
            self._problem = problem
            self._leader = None if not self._leading else self._leader
            await self._close()
            self._next = time.monotonic() + min(1.0, self.lease / 3)
            return
        if self._problem is not None:
            log.info("the leader lease can be reached again")
            self._problem = None
        if row is None:  # two daemons created the lease at the same moment; the other one's is there now
            self._next = sent + 0.1
            return
        remaining = float(row["remaining"])
        about = _about(row["about"])
        token = int(row["token"])
        self._leader = LeaderInfo(
            instance=str(about.get("instance", "?")),
            host=str(about.get("host", "?")),
            pid=int(about.get("pid", 0)),
            token=token,
            since=float(row["acquired_at"]),
            this=bool(row["won"]),
        )
        if row["won"]:
            if self._leading and self._fence_token != token:
                await self._lose()  # the lease ran out and was ours again: a new term, with a new token
            self._set_fence(Fence(token, sent + remaining - self.margin))
            if not self._leading:
                self._fence_token = token
                self._leading = True
                log.info("leading (fencing token %d, lease %s)", token, format_duration(self.lease))
                await self._changed(True)
            self._next = sent + self.lease / 3
        else:
            if self._leading:
                log.warning("lost the lead: %s took over", self._leader.describe())
                await self._lose()
            # Look again as the lease we saw runs out, and at least every third of a lease (a leader that
            # stops releases its lease early).
            self._next = sent + min(self.lease / 3, max(0.05, remaining + 0.05))

    async def _lose(self) -> None:
        self._leading = False
        self._fence_token = None
        if self._leader is not None and self._leader.this:
            self._leader = None
        self._set_fence(None)
        await self._changed(False)

    def _set_fence(self, fence: Fence | None) -> None:
        self._fence = fence
        for store in self.stores:
            store.fence = fence

    def _left(self) -> str:
        if self._fence is None:
            return format_duration(self.lease)
        return format_duration(max(0.0, math.ceil(self._fence.valid_until - time.monotonic())) + self.margin)

    async def _connection(self) -> Any:
        if self._conn is None or self._conn.is_closed():
            import asyncpg

            self._conn = await asyncpg.connect(
                self.dsn, timeout=self.timeout, server_settings={"application_name": "opstui leader lease"}
            )
        return self._conn

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await asyncio.wait_for(conn.close(), timeout=1.0)
            except Exception:
                conn.terminate()


def _about(raw: Any) -> dict[str, Any]:
    try:
        about = json.loads(raw) if isinstance(raw, str) else {}
    except ValueError:
        return {}
    return about if isinstance(about, dict) else {}


def _reason(exc: BaseException) -> str:
    # asyncpg's messages never carry the DSN, but an OSError's might name the host: still redacted.
    text = str(exc) or type(exc).__name__
    if isinstance(exc, TimeoutError):
        text = "no answer in time"
    return redact(f"{type(exc).__name__}: {text}" if not isinstance(exc, TimeoutError) else text)
