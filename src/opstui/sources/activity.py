"""Last activity from a log file: the time in its newest line's JSON field, or the file's modification time.

The file is followed incrementally: each tick reads only what was appended, and the newest line that carries
a time wins (a stack trace after it does not hide it).
"""

from __future__ import annotations

import json
import os

from opstui.config.data import LogActivityConfig
from opstui.errors import SourceUnavailable
from opstui.model import ActivityInfo, Facts
from opstui.sources.base import Source
from opstui.sources.files import FollowedFile
from opstui.units import parse_time

LOOK_BACK_LINES = 200
"""On start, how many of the last lines are searched for one with a time."""


class LogActivitySource(Source):
    kind = "activity"
    provides = frozenset({"activity"})

    def __init__(self, config: LogActivityConfig) -> None:
        super().__init__(f"activity {config.name}", interval=config.interval, timeout=config.timeout)
        self.config = config
        self.by_mtime = config.timestamp == "mtime"
        self.file = FollowedFile(config.path)
        self.last_at: float | None = None
        self.started = False
        self.detail = (
            f"modification time of {config.path}"
            if self.by_mtime
            else f"{config.timestamp} of the newest line of {config.path}"
        )

    async def collect(self) -> Facts:
        return await self.in_thread(self._read)

    def _read(self) -> Facts:
        if not os.path.exists(self.config.path):
            # Nothing logged yet is not an outage: the inactive rule judges the missing activity.
            return Facts(activity=(self._activity(f"{self.config.path} does not exist yet"),))
        if self.by_mtime:
            try:
                self.last_at = os.stat(self.config.path).st_mtime
            except FileNotFoundError:
                raise SourceUnavailable(f"{self.config.path} does not exist (yet)") from None
            except OSError as exc:
                raise SourceUnavailable(f"cannot read {self.config.path}: {exc.strerror}") from None
        else:
            if not self.started:
                # Follow first, then look back: a line appended in between is seen twice, never missed.
                self.file.open_at_end()
                lines = self.file.tail_lines(LOOK_BACK_LINES)
                self.started = True
            else:
                lines = self.file.read_new().lines
            newest = next((t for t in map(self._time_of, reversed(lines)) if t is not None), None)
            if newest is not None:
                self.last_at = newest
        return Facts(activity=(self._activity(self.detail),))

    def _activity(self, detail: str | None) -> ActivityInfo:
        return ActivityInfo(
            key=self.name,  # one item per source: the source's name is its row key
            name=self.config.name,
            source=self.name,
            last_at=self.last_at,
            max_age=self.config.max_age,
            detail=detail,
        )

    def _time_of(self, line: str) -> float | None:
        try:
            fields = json.loads(line)
        except ValueError:
            return None
        return parse_time(fields.get(self.config.timestamp)) if isinstance(fields, dict) else None

    async def close(self) -> None:
        self.file.close()
