"""What every source is: something that reads one kind of fact from one system, under a timeout."""

from __future__ import annotations

import abc
import asyncio
import threading
from collections.abc import Callable
from typing import ClassVar, TypeVar

from opstui.errors import SourceUnavailable
from opstui.model import Facts

T = TypeVar("T")


class Source(abc.ABC):
    """One reader of one system. `collect` may raise: the engine turns any error into a status, never a crash.

    Raise `SourceError` (or a subclass) with a message a person can act on, e.g.
    "connection refused at 127.0.0.1:6380"; anything else is reported by its type and message.
    """

    kind: ClassVar[str]

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
        """Run synchronous reading in a worker thread, one at a time.

        When a read outlives the source's timeout the engine stops waiting, but the thread runs on; the next
        tick must not read the same connection or file alongside it, so it reports that instead.
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

        try:
            return await asyncio.to_thread(guarded)
        except BaseException:
            with handover:
                if not started:
                    abandoned = True
                    busy.release()
            raise

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} every {self.interval}s>"
