"""The TUI in a real pseudo-terminal: time from launch to the first full frame, against a minimal Textual app
started the same way in the same run; `Terminal` also runs the dashboards whose CPU and memory bench.footprint
measures.

Every program runs in a real pseudo-terminal of the given size (the dashboard refuses to run without one),
whose output is read and thrown away as a terminal would.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import statistics
import struct
import sys
import termios
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

from bench._measure import Context, Result, SuiteRun
from bench.report import Column, cell, seconds, table
from opstui.demo import DemoWorld

MINIMAL_APP = textwrap.dedent(
    """
    from textual.app import App
    from textual.widgets import Static

    class Minimal(App[None]):
        def compose(self):
            yield Static("minimal-textual-app-ready")

    Minimal().run()
    """
)
SIZE = (160, 48)
"""Columns and rows: every pane on screen at once (below 120x40 the dashboard shows one pane at a time)."""


class Terminal:
    """A program running in a pseudo-terminal of a given size; its output is read and kept only briefly."""

    def __init__(self, argv: Sequence[str], *, size: tuple[int, int], env: dict[str, str], cwd: Path) -> None:
        self.started = time.perf_counter()
        pid, fd = pty.fork()
        if pid == 0:  # the child: size its terminal, then become the program
            columns, rows = size
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
            os.chdir(cwd)
            os.execve(argv[0], list(argv), env)
        self.pid = pid
        self.fd = fd
        self.tail = b""

    def read(self, timeout: float) -> bool:
        """Read what is there within `timeout`; False once the program closed the terminal."""
        if not select.select([self.fd], [], [], timeout)[0]:
            return True
        try:
            data = os.read(self.fd, 65536)
        except OSError:
            return False
        self.tail = (self.tail + data)[-65536:]
        return bool(data)

    def wait_for(self, marker: bytes, timeout: float) -> float:
        """Seconds from the start until `marker` appeared on the screen."""
        deadline = time.perf_counter() + timeout
        while marker not in self.tail:
            if time.perf_counter() > deadline or not self.read(0.05):
                raise RuntimeError(f"{marker!r} did not appear; last output: {self.tail[-300:]!r}")
        return time.perf_counter() - self.started

    def drain(self, seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end and self.read(min(0.2, max(0.0, end - time.perf_counter()))):
            pass

    def stop(self) -> None:
        try:
            os.kill(self.pid, 15)
            end = time.perf_counter() + 15
            while time.perf_counter() < end:
                self.read(0.1)
                done, _ = os.waitpid(self.pid, os.WNOHANG)
                if done:
                    break
            else:
                os.kill(self.pid, 9)
                os.waitpid(self.pid, 0)
        finally:
            os.close(self.fd)


def environment(home: Path) -> dict[str, str]:
    """No user config or state: every run starts from the same place. Compiled bytecode is written and reused,
    as with any installed package (some machines set PYTHONDONTWRITEBYTECODE, which would time the compiler)."""
    skip = ("XDG_", "OPSTUI_", "TEXTUAL", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    env.update(TERM="xterm-256color", COLORTERM="truecolor", HOME=str(home))
    for name in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
        env[name] = str(home / name.lower())
    return env


def read_all(terminals: Sequence[Terminal], seconds: float) -> None:
    """Keep reading every terminal for `seconds`, as terminals would (a program whose output is not read blocks)."""
    end = time.perf_counter() + seconds
    while (left := end - time.perf_counter()) > 0:
        ready, _, _ = select.select([t.fd for t in terminals], [], [], min(0.2, left))
        for term in terminals:
            if term.fd in ready:
                term.read(0)


def time_to(argv: Sequence[str], marker: bytes, *, home: Path) -> float:
    """Seconds from launch until `marker` is on the screen."""
    term = Terminal(argv, size=SIZE, env=environment(home), cwd=home)
    try:
        return term.wait_for(marker, timeout=60)
    finally:
        term.stop()


def run(ctx: Context) -> SuiteRun:
    home = ctx.root / "startup-home"
    home.mkdir()
    minimal = home / "minimal_app.py"
    minimal.write_text(MINIMAL_APP)
    python = sys.executable
    runs = ctx.pick(7, 2)
    with DemoWorld() as world:
        demo = [python, "-m", "opstui", "-c", str(world.config_path)]
        cases = [
            ("minimal", "a minimal Textual app (one `Static`)", [python, str(minimal)], b"minimal-textual-app-ready"),
            ("host", "`opstui`, no config (this host): first frame", [python, "-m", "opstui"], b"no alerts"),
            ("demo", "`opstui` with the demo config: first frame", demo, b"no alerts"),
            ("demo-data", "`opstui` with the demo config: first frame with data (host memory)", demo, b"% used"),
        ]
        rows = []
        # Interleaved, so that a slow moment of the machine does not land on one case only.
        found: dict[str, list[float]] = {id: [] for id, *_ in cases}
        for _, _, argv, marker in cases:  # a first start of each writes its bytecode; it is not counted
            time_to(argv, marker, home=home)
        for _ in range(runs):
            for id, _, argv, marker in cases:
                found[id].append(time_to(argv, marker, home=home))
    minimal_median = statistics.median(found["minimal"])
    for id, what, _, _ in cases:
        median = statistics.median(found[id])
        values = {"median_s": median, "min_s": min(found[id]), "max_s": max(found[id]), "runs": runs}
        values["vs_minimal"] = median / minimal_median
        rows.append(Result(id, what, values))
    return SuiteRun("startup", rows, {"size": f"{SIZE[0]}x{SIZE[1]}"})


def section(run: SuiteRun) -> str:
    columns: list[Column] = [
        ("what appears", lambda row: row.what, False),
        ("median", cell("median_s", lambda v: seconds(v, 3)), True),
        ("min-max", lambda r: f"{r.values['min_s']:.3f}-{r.values['max_s']:.3f} s", True),
        ("vs the minimal app", cell("vs_minimal", lambda v: f"{v:.2f}x"), True),
    ]
    runs = run.results[0].values["runs"] if run.results else 0
    return f"""\
Each program is started {runs} times at {run.facts["size"]} in a real pseudo-terminal, the cases interleaved
after one uncounted start of each (which writes its compiled bytecode, as an install would have it), and timed
until the marker text is on the screen.

{table(columns, run.results)}"""
