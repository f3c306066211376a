"""Dispatch counts of the latest report run from a JSON-lines log: processed, sent, failed, and lines skipped.

The log is followed incrementally (only new bytes each tick; rotation and truncation survive), so a 1 GB log
costs its growth per tick, not its size. When opstui starts, the latest run is found by reading backwards from
the end for its start line (within `lookback` bytes); with a time window instead, the window's lines are
counted. The SQL and Redis-counter variants of dispatch counts live with their servers' sources.
"""

from __future__ import annotations

import collections
import json
import os
import time
from collections.abc import Iterator, Mapping
from typing import Any

from opstui.config.data import DispatchLogConfig, Match
from opstui.model import DispatchInfo, Facts
from opstui.sources.base import Source
from opstui.sources.files import READ_CHUNK, FollowedFile
from opstui.units import format_bytes, parse_time

KINDS = ("processed", "sent", "failed")


class Rule:
    """A match rule on a JSON line's fields, with a cheap text test that rules most lines out before parsing."""

    def __init__(self, fields: Match) -> None:
        self.fields = dict(fields)
        # A string value appears in the raw line as its JSON text (when the writer does not escape it).
        self.needles = tuple(json.dumps(v) for v in fields.values() if isinstance(v, str) and v.isascii())
        self.byte_needles = tuple(needle.encode() for needle in self.needles)
        self._checks = tuple((name, "." in name, value) for name, value in fields.items())

    def __bool__(self) -> bool:
        return bool(self.fields)

    def may_match(self, raw: str) -> bool:
        # A loop, not all(...): this runs for every line of the log, and the generator costs twice as much.
        for needle in self.needles:  # noqa: SIM110
            if needle not in raw:
                return False
        return True

    def may_match_bytes(self, raw: bytes) -> bool:
        return all(needle in raw for needle in self.byte_needles)

    def matches(self, line: Mapping[str, Any]) -> bool:
        for name, dotted, wanted in self._checks:
            found = _field(line, name) if dotted else line.get(name, _MISSING)
            # In Python True == 1; in a log line `"success": 1` is not `"success": true`.
            if found is wanted:
                continue
            if isinstance(found, bool) or isinstance(wanted, bool) or found != wanted:
                return False
        return True


def _field(line: Mapping[str, Any], name: str) -> Any:
    """A field by name, or a nested one by a dotted path ("meta.phase")."""
    if name in line:
        return line[name]
    value: Any = line
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


_MISSING = object()


class RunCount:
    """The counts of the latest run, fed one line at a time, oldest first."""

    def __init__(self, config: DispatchLogConfig) -> None:
        self.config = config
        self.start = Rule(config.start)
        self.rules = {kind: Rule(getattr(config, kind)) for kind in KINDS}
        self.window = config.window
        self.marks_runs = bool(self.start) and self.window is None
        """Runs are bounded by start lines (and not by a time window)."""
        self.counts = dict.fromkeys(KINDS, 0)
        self.skipped = 0
        self.run_started_at: float | None = None
        self.last_event: tuple[Any, float] | None = None
        """The latest counted line's time field and when it was read; parsed only when shown."""
        self.events: collections.deque[tuple[float, str]] = collections.deque()
        """With a time window: (time, kind) of each counted or skipped line, oldest first."""

    def feed(self, raw: str, now: float) -> None:
        if not raw or raw.isspace():
            return
        starts = self.marks_runs and self.start.may_match(raw)
        kinds = [kind for kind, rule in self.rules.items() if rule and rule.may_match(raw)]
        if not starts and not kinds:
            # No rule can match, so only whether it is JSON matters: a line in braces is taken for JSON
            # without parsing it (most lines of a busy log are of this sort).
            text = raw.strip()
            if not (text.startswith("{") and text.endswith("}")):
                self._count("skipped", now)
            return
        try:
            line = json.loads(raw)
        except ValueError:
            line = None
        if not isinstance(line, dict):
            self._count("skipped", now)
            return
        if starts and self.start.matches(line):
            self.counts = dict.fromkeys(KINDS, 0)
            self.skipped = 0
            self.run_started_at = self._time(line, now)
            return
        for kind in kinds:
            if self.rules[kind].matches(line):
                self.last_event = (line.get(self.config.timestamp_field), now)
                self._count(kind, now, line)

    def _time(self, line: Mapping[str, Any], now: float) -> float:
        return parse_time(line.get(self.config.timestamp_field)) or now

    def _count(self, kind: str, now: float, line: Mapping[str, Any] | None = None) -> None:
        if self.window is not None:
            self.events.append((now if line is None else self._time(line, now), kind))
        elif kind == "skipped":
            self.skipped += 1
        else:
            self.counts[kind] += 1

    def info(self, key: str, name: str, source: str, now: float, error: str | None) -> DispatchInfo:
        counts, skipped, started = self.counts, self.skipped, self.run_started_at
        if self.window is not None:
            while self.events and self.events[0][0] < now - self.window:
                self.events.popleft()
            tally = collections.Counter(kind for _, kind in self.events)
            counts = {kind: tally[kind] for kind in KINDS}
            skipped = tally["skipped"]
            started = now - self.window
        return DispatchInfo(
            key=key,
            name=name,
            source=source,
            processed=counts["processed"],
            sent=counts["sent"],
            failed=counts["failed"],
            run_started_at=started,
            last_event_at=None if self.last_event is None else parse_time(self.last_event[0]) or self.last_event[1],
            skipped_lines=skipped,
            error=error,
        )


class DispatchLogSource(Source):
    kind = "dispatch"
    provides = frozenset({"dispatch"})

    def __init__(self, config: DispatchLogConfig) -> None:
        super().__init__(f"dispatch {config.name}", interval=config.interval, timeout=config.timeout)
        self.config = config
        self.file = FollowedFile(config.path)
        self.count = RunCount(config)
        self.opened = False
        self.problem: str | None = None
        self.detail = config.path

    async def collect(self) -> Facts:
        return await self.in_thread(self._read)

    def _read(self) -> Facts:
        now = time.time()
        if not os.path.exists(self.config.path):
            # A report log appears with its first run, and a nightly rotation may leave none until the next:
            # that is no outage. The counts stay what they were (zero before any run).
            self.detail = f"{self.config.path} does not exist yet: no run logged"
            info = self.count.info(self.name, self.config.name, self.name, now, self.problem)
            return Facts(dispatch=(info,))
        self.detail = self.config.path
        if not self.opened:
            self._first_open(now)
        else:
            new = self.file.read_new()
            for line in new.lines:
                self._feed(line, now)
        info = self.count.info(self.name, self.config.name, self.name, now, self.problem)
        return Facts(dispatch=(info,))

    def _feed(self, line: str, now: float) -> None:
        if self.problem and self.count.start.may_match(line) and self.count.start.matches(_loads(line)):
            self.problem = None  # a run started since: its counts are whole again
        self.count.feed(line, now)

    def _first_open(self, now: float) -> None:
        """Find the latest run in what the file holds now, count it, and follow the file from its end."""
        end = self.file.open_at_end()
        floor = max(0, end - self.config.lookback)
        begin = floor
        if self.count.start and self.config.window is None:
            found = self._find_last_start(floor, end)
            if found is not None:
                begin = found
            elif floor > 0:
                begin = end  # counting part of a run would be wrong: wait for the next start line
                self.problem = (
                    f"no run start {json.dumps(self.config.start)} in the last "
                    f"{format_bytes(self.config.lookback)} of {self.config.path}; raise lookback"
                )
        for line in self._lines_between(begin, end, skip_partial_first=begin == floor > 0):
            self.count.feed(line.decode("utf-8", "replace"), now)
        self.opened = True

    def _find_last_start(self, floor: int, end: int) -> int | None:
        """The offset of the last start line in [floor, end), reading backwards a chunk at a time."""
        pos, carry = end, b""
        while pos > floor:
            size = min(READ_CHUNK, pos - floor)
            pos -= size
            # `carry` is the end of a line that began before the chunk read last; this chunk completes it.
            data = self.file.read_at(pos, size) + carry
            cut = data.find(b"\n") + 1
            whole = 0 if pos == 0 else cut  # before the first newline is a line's tail, but at offset 0 a line
            if whole or pos == 0:
                found = self._last_start_in(data[whole:])
                if found is not None:
                    return pos + whole + found
            carry = data[:cut] if cut else data
        return None

    def _last_start_in(self, data: bytes) -> int | None:
        """The offset of the last start line in `data` (whole lines). With a string the line must contain, found
        with bytes.rfind, so 64 MB are searched at the speed of memory rather than line by line in Python."""
        start = self.count.start
        needle = start.byte_needles[0] if start.byte_needles else None
        stop = len(data)
        while stop > 0:
            at = stop - 1 if needle is None else data.rfind(needle, 0, stop)
            if at < 0:
                return None
            begin = data.rfind(b"\n", 0, at) + 1
            end = data.find(b"\n", at)
            raw = data[begin : len(data) if end < 0 else end]
            if start.may_match_bytes(raw) and start.matches(_loads(raw)):
                return begin
            stop = begin
        return None

    def _lines_between(self, begin: int, end: int, *, skip_partial_first: bool) -> Iterator[bytes]:
        """The lines in [begin, end), where end is a line boundary; the first is dropped if it began before."""
        pos, partial, skip = begin, b"", skip_partial_first
        while pos < end:
            chunk = self.file.read_at(pos, min(READ_CHUNK, end - pos))
            if not chunk:
                break
            pos += len(chunk)
            pieces = (partial + chunk).split(b"\n")
            partial = pieces.pop()
            if skip and pieces:
                pieces, skip = pieces[1:], False
            yield from pieces

    async def close(self) -> None:
        self.file.close()


def _loads(raw: str | bytes) -> Mapping[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
