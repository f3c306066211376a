"""Running an action: a program in its own process group with its output streamed line by line, and `Run`.

A program never gets a shell, a terminal or stdin; it gets its own session (`start_new_session`), so a
timeout or a cancel stops the whole group it started: SIGTERM, then SIGKILL after a grace period for
whatever is left. Output is split into lines as it arrives, control characters removed, secrets redacted,
and kept in a bounded buffer that subscribers (the TUI's action pane, the bot, the CLI) read live.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import psutil

from opstui.actions.base import Emit, Outcome, Stream
from opstui.redact import redact
from opstui.units import format_duration

if TYPE_CHECKING:
    from opstui.actions.guard import Plan

log = logging.getLogger(__name__)

MAX_LINE = 1000
"""Characters kept of one output line; a longer line is cut and marked (a minified JSON dump, a progress bar).
With `output_lines` and RECENT_RUNS this bounds what runs hold in memory (1000 x 1000 x 10: about 10 MB)."""
DRAIN = 1.0
"""Seconds to keep reading after the program exits, for output its background children still write."""
KILL_WAIT = 5.0
"""Seconds to wait for a SIGKILLed process group to be gone."""
AUDIT_LINES = 20
"""The last lines of output kept in the audit log entry."""

_CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-_]|[\x00-\x08\x0b-\x1f\x7f]")

Result = Literal["ok", "failed", "timeout", "cancelled"]


@dataclass(frozen=True, slots=True)
class OutputLine:
    at: float
    stream: Stream
    text: str


@dataclass(frozen=True, slots=True)
class RunResult:
    result: Result
    duration: float
    exit_status: int | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.result == "ok"

    @property
    def summary(self) -> str:
        """`ok in 2.3s (exit 0)`, `timeout after 1m (...)`: the line people read after a run."""
        took = format_duration(self.duration) if self.duration >= 1 else f"{self.duration * 1000:.0f}ms"
        text = f"{self.result} in {took}"
        if self.exit_status is not None:
            text += f" ({describe_exit(self.exit_status)})"
        return f"{text}: {self.reason}" if self.reason else text


RunEvent = OutputLine | RunResult
Subscriber = Callable[[RunEvent], None]


def describe_exit(status: int) -> str:
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exit {status}"


def clean_line(text: str) -> str:
    """A line as it may be shown and stored: no terminal escapes or control characters, secrets masked."""
    text = text.rsplit("\r", 1)[-1] if "\r" in text.rstrip("\r") else text.rstrip("\r")
    text = _CONTROL.sub("", text)
    if len(text) > MAX_LINE:
        text = text[:MAX_LINE] + " [line cut]"
    return redact(text)


class Run:
    """One run of a planned action: its output as it comes, then its result. Created by `Actions.start`."""

    def __init__(self, plan: Plan, *, audit_id: int, keep_lines: int) -> None:
        self.plan = plan
        self.audit_id = audit_id
        self.started_at = time.time()
        self.lines: deque[OutputLine] = deque(maxlen=keep_lines)
        self.dropped = 0
        """Lines no longer kept in `lines` because the buffer was full (subscribers saw them)."""
        self.result: RunResult | None = None
        self._subscribers: list[Subscriber] = []
        self._done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.cancel_reason: str | None = None

    @property
    def name(self) -> str:
        return self.plan.action.name

    @property
    def running(self) -> bool:
        return self.result is None

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call `callback` with every new OutputLine, then once with the RunResult; returns an unsubscribe.

        Lines already emitted are in `run.lines`; `follow()` gives both without a gap. Callbacks run on the
        event loop and must be quick (the TUI posts a message); one that raises is logged and kept.
        """
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    async def follow(self) -> AsyncIterator[OutputLine]:
        """Every kept line, then each new one as it comes, until the run ends."""
        queue: asyncio.Queue[RunEvent] = asyncio.Queue()
        unsubscribe = self.subscribe(queue.put_nowait)
        try:
            for line in list(self.lines):
                yield line
            if self.result is not None:
                return
            while True:
                event = await queue.get()
                if isinstance(event, RunResult):
                    return
                yield event
        finally:
            unsubscribe()

    async def wait(self) -> RunResult:
        await self._done.wait()
        assert self.result is not None
        return self.result

    def cancel(self, reason: str) -> None:
        """Stop the run (its process group is stopped as on a timeout); the result is "cancelled".

        Called again while the group is being stopped, it cuts the grace period short: SIGKILL at once (a
        daemon stopping has seconds, not the configured grace).
        """
        if self._task is not None and not self._task.done():
            self.cancel_reason = self.cancel_reason or reason
            # On the next loop iteration, not now: a task cancelled before its first step never runs a line,
            # so a run cancelled right after `start` would never be recorded as ended.
            asyncio.get_running_loop().call_soon(self._task.cancel)

    def emit(self, stream: Stream, text: str) -> None:
        line = OutputLine(time.time(), stream, clean_line(text))
        if len(self.lines) == self.lines.maxlen:
            self.dropped += 1
        self.lines.append(line)
        self._publish(line)

    def tail(self, count: int = AUDIT_LINES) -> list[str]:
        """The last lines, for the audit log."""
        lines = list(self.lines)[-count:]
        return [f"{'! ' if line.stream == 'err' else ''}{line.text}" for line in lines]

    def attach(self, task: asyncio.Task[None]) -> None:
        """The task doing the work (set once by `Actions.start`); `cancel` cancels it."""
        self._task = task

    def finish(self, result: RunResult) -> None:
        self.result = result
        self._done.set()
        self._publish(result)

    def _publish(self, event: RunEvent) -> None:
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:
                log.exception("a subscriber of run %s failed", self.name)


async def run_program(argv: Sequence[str], emit: Emit, *, cwd: Path, env: Mapping[str, str], grace: float) -> Outcome:
    """Run `argv` (no shell) in its own session and stream its output; on cancel, stop its whole group."""
    loop = asyncio.get_running_loop()
    pipes = [os.pipe(), os.pipe()]
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=dict(env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=pipes[0][1],
            stderr=pipes[1][1],
            start_new_session=True,
        )
    except OSError as exc:
        for read_end, write_end in pipes:
            os.close(read_end)
            os.close(write_end)
        return Outcome(ok=False, detail=_start_failure(argv[0], cwd, exc))
    streams: tuple[Stream, Stream] = ("out", "err")
    pumps = [
        await _pump(loop, read_end, write_end, stream, emit)
        for (read_end, write_end), stream in zip(pipes, streams, strict=True)
    ]
    try:
        try:
            status = await proc.wait()
        except asyncio.CancelledError:
            await stop_group(proc, grace, emit)
            raise
        # A background child may hold the pipes open after the program exits: read what it writes for a
        # moment, then let it go (it is the user's to keep; on a timeout or cancel the group was stopped).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(p.closed for p in pumps)), DRAIN)
    finally:
        for pump in pumps:
            pump.close()
    return Outcome(ok=status == 0, exit_status=status)


async def stop_group(proc: asyncio.subprocess.Process, grace: float, emit: Emit) -> None:
    """SIGTERM the process group, wait up to `grace` for every member to exit, then SIGKILL what is left."""
    group = proc.pid  # start_new_session: the program leads its own group
    emit("info", f"stopping process group {group} (SIGTERM)")
    _signal_group(group, signal.SIGTERM)
    try:
        await asyncio.to_thread(_wait_group_gone, group, grace)
    finally:  # even when cancelled again while waiting: nothing of the group may outlive the run
        if live_members(group):
            emit("info", f"still running after {format_duration(grace)}: SIGKILL to process group {group}")
            _signal_group(group, signal.SIGKILL)
    # SIGKILL is delivered when each process is next scheduled: the run ends only once the group is gone
    # (bounded, for a process stuck in the kernel that no signal can end).
    await asyncio.to_thread(_wait_group_gone, group, KILL_WAIT)
    await proc.wait()


def _wait_group_gone(group: int, grace: float) -> None:
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and live_members(group):
        time.sleep(0.05)


def live_members(group: int) -> list[int]:
    """PIDs in a process group that are still running (zombies waiting for a reaper count as gone)."""
    members = []
    for pid in psutil.pids():
        try:
            if os.getpgid(pid) == group and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                members.append(pid)
        except (ProcessLookupError, psutil.NoSuchProcess, PermissionError):
            continue
    return members


async def _pump(
    loop: asyncio.AbstractEventLoop, read_end: int, write_end: int, stream: Stream, emit: Emit
) -> _LinePump:
    os.close(write_end)  # the child has its own copy; ours would keep the pipe open forever
    pump = _LinePump(stream, emit)
    await loop.connect_read_pipe(lambda: pump, os.fdopen(read_end, "rb", buffering=0))
    return pump


def _signal_group(group: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, sig)


def _start_failure(program: str, cwd: Path, exc: OSError) -> str:
    if exc.filename is not None and Path(exc.filename) == cwd:
        return f"cannot start {program}: the working directory {cwd} does not exist or is not a directory"
    if isinstance(exc, FileNotFoundError):
        return f"cannot start {program}: no such program (give a path, or check PATH and the working directory)"
    if isinstance(exc, PermissionError):
        return f"cannot start {program}: permission denied (is it executable? chmod +x it)"
    return f"cannot start {program}: {exc.strerror or exc}"


class _LinePump(asyncio.Protocol):
    """Reads one pipe and emits it line by line, bounding a line that never ends."""

    def __init__(self, stream: Stream, emit: Emit) -> None:
        self.stream = stream
        self.emit = emit
        self.buffer = bytearray()
        self.skipping = False
        self.transport: asyncio.BaseTransport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\n")
            if end < 0:
                break
            line, self.buffer = bytes(self.buffer[:end]), self.buffer[end + 1 :]
            if self.skipping:
                self.skipping = False  # the rest of a line already cut
            else:
                self._send(line)
        if len(self.buffer) > MAX_LINE * 4:  # bytes: up to 4 per character
            self._send(bytes(self.buffer[: MAX_LINE * 4]))
            self.buffer.clear()
            self.skipping = True

    def connection_lost(self, exc: Exception | None) -> None:
        if self.buffer and not self.skipping:
            self._send(bytes(self.buffer))
        self.buffer.clear()
        if not self.closed.done():
            self.closed.set_result(None)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _send(self, line: bytes) -> None:
        self.emit(self.stream, line.decode("utf-8", errors="replace"))
