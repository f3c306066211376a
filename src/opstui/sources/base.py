"""What every source is: something that reads one kind of fact from one system, under a timeout."""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import ClassVar

from opstui.model import Facts


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

    @abc.abstractmethod
    async def collect(self) -> Facts:
        """Read the system once and return what was found."""

    async def close(self) -> None:
        """Release connections and files; called once when the engine stops."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} every {self.interval}s>"
