"""Following log files cheaply, as `tail -F` does: only new bytes each tick, surviving rotation and truncation."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from opstui.errors import SourceUnavailable

MAX_LINE = 64 * 1024
"""Longer lines are cut to this many bytes: one runaway line must not hold a tick's memory hostage."""
READ_CHUNK = 1024 * 1024
MAX_READ_PER_CALL = 16 * 1024 * 1024
"""At most this much is read per call; a backlog is worked off over the following ticks."""


@dataclass(frozen=True, slots=True)
class NewLines:
    lines: list[str]
    restarted: bool
    """True when the file was rotated or truncated since the last call (the lines start from its beginning)."""


class FollowedFile:
    """A text file read incrementally: each `read_new()` returns the complete lines added since the last call.

    The first call starts at the end of the file (history is what `tail_lines` is for). A new file at the
    same path (rotation) is read from its beginning after the rest of the old one; a file that shrank
    (truncation, `> file`) is read again from the start. A last line without its newline waits for it.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self._ident: tuple[int, int] | None = None
        self._offset = 0
        self._partial = b""

    def exists(self) -> bool:
        return self.path.is_file()

    def read_new(self) -> NewLines:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            raise SourceUnavailable(f"{self.path} does not exist (yet)") from None
        except OSError as exc:
            raise SourceUnavailable(f"cannot read {self.path}: {exc.strerror}") from None
        if self._fd is None:
            self._open(at_end=True)
            return NewLines([], restarted=False)
        lines: list[str] = []
        restarted = False
        if (stat.st_dev, stat.st_ino) != self._ident:
            # Rotated: the old file may have got its last lines after our previous read.
            lines = self._split(self._read_from_offset())
            if self._partial:
                lines.append(_decode(self._partial))
            self._open(at_end=False)
            restarted = True
        elif stat.st_size < self._offset:
            self._offset = 0
            self._partial = b""
            restarted = True
        lines += self._split(self._read_from_offset())
        return NewLines(lines, restarted=restarted)

    def open_at_end(self) -> int:
        """Start following at the end of the file's last complete line, reading nothing; returns that offset.

        With `read_at` this lets a reader look back through what the file held when following began, with
        nothing lost or read twice between that look and the first `read_new`; a last line still being written
        is returned by `read_new` once it is complete.
        """
        if self._fd is None:
            if not self.exists():
                raise SourceUnavailable(f"{self.path} does not exist (yet)")
            self._open(at_end=True)
            tail = self.read_at(max(0, self._offset - MAX_LINE), min(self._offset, MAX_LINE))
            if tail and not tail.endswith(b"\n") and b"\n" in tail:
                self._offset -= len(tail) - tail.rindex(b"\n") - 1
        return self._offset

    def read_at(self, offset: int, size: int) -> bytes:
        """Up to `size` bytes from `offset` of the file being followed (the one opened, even if renamed since)."""
        assert self._fd is not None, "open_at_end() first"
        return os.pread(self._fd, size, offset)

    def tail_lines(self, count: int, *, max_bytes: int = 4 * 1024 * 1024) -> list[str]:
        """The last `count` complete lines of the file (reading backwards, at most `max_bytes`)."""
        try:
            with self.path.open("rb") as handle:
                handle.seek(0, os.SEEK_END)
                end = handle.tell()
                start = end
                data = b""
                while start > 0 and data.count(b"\n") <= count and end - start < max_bytes:
                    step = min(READ_CHUNK, start)
                    start -= step
                    handle.seek(start)
                    data = handle.read(step) + data
        except FileNotFoundError:
            raise SourceUnavailable(f"{self.path} does not exist (yet)") from None
        except OSError as exc:
            raise SourceUnavailable(f"cannot read {self.path}: {exc.strerror}") from None
        lines = data.split(b"\n")
        if start > 0:
            lines = lines[1:]  # the first piece is the end of a line that started before what we read
        if lines and lines[-1] == b"":
            lines = lines[:-1]
        return [_decode(line) for line in lines[-count:]] if count else []

    def _open(self, *, at_end: bool) -> None:
        self.close()
        try:
            self._fd = os.open(self.path, os.O_RDONLY)
        except OSError as exc:
            raise SourceUnavailable(f"cannot open {self.path}: {exc.strerror}") from None
        stat = os.fstat(self._fd)
        self._ident = (stat.st_dev, stat.st_ino)
        self._offset = stat.st_size if at_end else 0
        self._partial = b""

    def _read_from_offset(self) -> bytes:
        assert self._fd is not None
        parts = []
        budget = MAX_READ_PER_CALL
        while budget > 0:
            chunk = os.pread(self._fd, min(READ_CHUNK, budget), self._offset)
            if not chunk:
                break
            parts.append(chunk)
            self._offset += len(chunk)
            budget -= len(chunk)
        return b"".join(parts)

    def _split(self, data: bytes) -> list[str]:
        if not data:
            return []
        data = self._partial + data
        pieces = data.split(b"\n")
        self._partial = pieces.pop()[:MAX_LINE]
        return [_decode(piece) for piece in pieces]

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def _decode(raw: bytes) -> str:
    return raw[:MAX_LINE].decode("utf-8", errors="replace").rstrip("\r")
