"""Running `opstui daemon` as a real process in tests: its JSON log lines, its endpoint, its signals."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

from opstui.config import Config
from opstui.daemon import Daemon

REPO = Path(__file__).resolve().parent.parent


class DaemonProcess:
    """A daemon subprocess; its stdout lines are collected as they come (`lines`, `events`)."""

    def __init__(self, argv: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.proc = subprocess.Popen(
            list(argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @classmethod
    def opstui(cls, config: Path, *args: str, env: dict[str, str] | None = None) -> DaemonProcess:
        return cls([sys.executable, "-m", "opstui", "-c", str(config), "daemon", *args], env=env)

    @classmethod
    def script(cls, code: str, *args: str, env: dict[str, str] | None = None) -> DaemonProcess:
        return cls([sys.executable, "-c", code, *args], env=env)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def events(self) -> list[dict[str, Any]]:
        """The JSON log lines (every line must be one)."""
        return [json.loads(line) for line in list(self.lines) if line.startswith("{")]

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = 20.0, what: str = "a log line") -> str:
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            lines = list(self.lines)
            for line in lines[seen:]:
                if predicate(line):
                    return line
            seen = len(lines)
            if self.proc.poll() is not None and seen == len(self.lines):
                raise AssertionError(f"the daemon exited ({self.proc.returncode}) before {what}:\n{self.output()}")
            time.sleep(0.05)
        raise AssertionError(f"no {what} within {timeout}s:\n{self.output()}")

    def address(self, timeout: float = 20.0) -> str:
        """host:port of its /healthz, from the log line that announces it."""
        line = self.wait_for(lambda text: "serving /healthz" in text, timeout, "the endpoint")
        return json.loads(line)["msg"].rsplit("http://", 1)[1]

    def send(self, sig: signal.Signals) -> None:
        os.kill(self.proc.pid, sig)

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.send(sig)
        status = self.proc.wait(timeout)
        self._finish()
        return status

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._finish()

    def _finish(self) -> None:
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def output(self) -> str:
        return "\n".join(self.lines[-60:])


def get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# --- a daemon in the test's own process (quicker to start; its parts can be reached) ----------------------------


@contextlib.asynccontextmanager
async def running(config: Config) -> AsyncIterator[Daemon]:
    """A started daemon, stopped (and its exit status checked) when the block ends."""
    stop = asyncio.Event()
    daemon = Daemon(config, stop=stop)
    task = asyncio.create_task(daemon.run())
    try:
        await wait(lambda: daemon.started or task.done(), 20, "the daemon to start")
        assert not task.done(), task
        yield daemon
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 10) == 0


async def wait(predicate: Callable[[], bool], limit: float, what: str) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def fetch(daemon: Daemon, path: str) -> tuple[int, str]:
    """GET one of the daemon's own endpoints."""
    from opstui._httpx import httpx

    assert daemon.http is not None and daemon.http.address is not None
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://{daemon.http.address}{path}")
    return response.status_code, response.text
