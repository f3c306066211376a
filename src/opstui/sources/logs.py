"""Error-log tails: the last error lines of a log file, read incrementally, stripped of control codes, redacted."""

from __future__ import annotations

import re
from collections import deque
from pathlib import Path

from opstui.errors import SourceUnavailable
from opstui.model import Facts, LogTail
from opstui.redact import redact
from opstui.sources.base import Source
from opstui.sources.files import FollowedFile

MAX_SHOWN = 1000
"""Characters of one line kept for screens and chat messages; the file itself is untouched."""
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]")
"""Colour codes and other terminal escape sequences (CSI, OSC), which node and python loggers love."""
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def clean_line(line: str) -> str:
    """A log line safe to show: no terminal escapes or control characters, secrets masked, length bounded."""
    line = _CONTROL.sub("", _ESCAPES.sub("", line).replace("\t", "    "))
    # Redact before cutting: a secret cut in half no longer matches and half of it would be shown.
    return redact(line)[:MAX_SHOWN]


class LogTailer:
    """The last `lines` error lines of one file, kept up to date by reading only what was appended since."""

    def __init__(self, path: Path, *, lines: int, match: re.Pattern[str] | None = None) -> None:
        self.path = path
        self.match = match
        self._followed = FollowedFile(path)
        self._lines: deque[str] = deque(maxlen=lines)
        self._primed = False

    @property
    def lines(self) -> tuple[str, ...]:
        return tuple(self._lines)

    def read(self) -> bool:
        """Take in what was appended (the file's last lines on the first read); False when the file is missing.

        Synchronous file I/O: call it in a thread. Raises SourceUnavailable when the file cannot be read.
        """
        if not self.path.exists():
            return False
        if not self.path.is_file():
            raise SourceUnavailable(f"{self.path} is not a file")
        if not self._primed:
            # Position at the end first, then read the history: a line written in between may show twice,
            # which beats an error line never shown at all.
            self._followed.read_new()
            history = self._followed.tail_lines(self._history_lines())
            self._take(history)
            self._primed = True
            return True
        self._take(self._followed.read_new().lines)
        return True

    def _history_lines(self) -> int:
        maxlen = self._lines.maxlen or 0
        # With a filter, most lines of a mixed log are not errors: look further back for enough of them.
        return maxlen if self.match is None else max(200, maxlen * 20)

    def _take(self, lines: list[str]) -> None:
        for line in lines:
            if not line.strip() or (self.match is not None and not self.match.search(line)):
                continue
            self._lines.append(clean_line(line))

    def close(self) -> None:
        self._followed.close()


class LogSource(Source):
    """One configured log file (`[[logs]]`): its last error lines, as a `LogTail`."""

    kind = "logs"
    provides = frozenset({"logs"})

    def __init__(
        self,
        log_name: str,
        *,
        path: Path,
        lines: int,
        match: str | None = None,
        interval: float,
        timeout: float,
    ) -> None:
        super().__init__(f"log {log_name}", interval=interval, timeout=timeout)
        self.log_name = log_name
        self.tailer = LogTailer(path, lines=lines, match=re.compile(match) if match else None)

    async def collect(self) -> Facts:
        exists = await self.in_thread(self.tailer.read)
        # A log that does not exist yet is normal (error logs appear with the first error): not a failure.
        self.detail = None if exists else f"{self.tailer.path} does not exist yet"
        tail = LogTail(
            key=f"log:{self.log_name}",
            name=self.log_name,
            source=self.name,
            path=str(self.tailer.path),
            lines=self.tailer.lines,
        )
        return Facts(logs=(tail,))

    async def close(self) -> None:
        self.tailer.close()
