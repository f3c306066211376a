"""What every source is: something that reads one kind of fact from one system, under a timeout."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import ClassVar, TypeVar

from opstui.errors import SourceUnavailable
from opstui.model import Facts

T = TypeVar("T")


def sections(**configured: object) -> frozenset[str]:
    """The `Facts` sections whose config is set: `sections(queues=[...], locks=[])` is {"queues"}."""
    return frozenset(name for name, config in configured.items() if config)


class Source(abc.ABC):
    """One reader of one system. `collect` may raise: the engine turns any error into a status, never a crash.

    Raise `SourceError` (or a subclass) with a message a person can act on, e.g.
    "connection refused at 127.0.0.1:6380"; anything else is reported by its type and message.
    """

    kind: ClassVar[str]
    provides: frozenset[str] = frozenset()
    """The `Facts` sections this source fills (field names of `Facts`); a source whose sections depend on its
    config (Redis, PostgreSQL) sets its own in `__init__`."""

    def __init__(self, name: str, *, interval: float, timeout: float) -> None:
        self.name = name
        self.interval = interval
        self.timeout = timeout
        self.detail: str | None = None
        """How this source is reading right now, when that is worth showing (set by the source)."""
        self.on_update: Callable[[Facts], None] | None = None
        """Set by the engine while it runs this source on its schedule: a source that learns of a change between
        polls (PM2's event socket) calls it with fresh facts. None in one-shot runs (`opstui check`)."""
        self._reading = threading.Lock()

    @abc.abstractmethod
    async def collect(self) -> Facts:
        """Read the system once and return what was found."""

    async def close(self) -> None:
        """Release connections and files; called once when the engine stops."""

    async def in_thread(self, read: Callable[[], T]) -> T:
        """Run synchronous reading in a thread of this source's own, one read at a time.

        When a read outlives the source's timeout the engine stops waiting, but the thread runs on (a glob on
        a dead NFS mount, a psutil sweep on a thrashing host); the next tick must not read the same
        connection or file alongside it, so it reports that instead. Each read gets its own daemon thread,
        not one of the loop's shared pool: a stuck system must not use up the threads every other source
        and the HTTP client set-up wait for, nor hold up the process's exit.
        """
        busy = self._reading
        if not busy.acquire(blocking=False):
            raise SourceUnavailable("still busy with the previous read, which took longer than the timeout")
        handover = threading.Lock()
        started = abandoned = False

        def guarded() -> T:
            nonlocal started
            with handover:
                if abandoned:  # cancelled before a thread picked it up; nobody waits for this any more
                    raise asyncio.CancelledError
                started = True
            try:
                return read()
            finally:
                busy.release()

        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()

        def settle(result: T | None, error: BaseException | None) -> None:
            if done.done():  # the tick gave up waiting (timeout, cancellation)
                return
            if error is not None:
                done.set_exception(error)
            else:
                done.set_result(result)  # type: ignore[arg-type]

        def run() -> None:
            result: T | None = None
            error: BaseException | None = None
            try:
                result = guarded()
            except BaseException as exc:
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop closed while we read: nobody waits any more
                loop.call_soon_threadsafe(settle, result, error)

        threading.Thread(target=run, name=f"source {self.name}", daemon=True).start()
        try:
            return await done
        except BaseException:
            with handover:
                if not started:
                    abandoned = True
                    busy.release()
            raise

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} every {self.interval}s>"
