"""The TUI's cost: CPU use at the default refresh against `opstui demo`, and the time to the first frame.

    uv run python -m bench.bench_tui                 # both, with the defaults below (about 12 minutes)
    uv run python -m bench.bench_tui --only startup  # time to first frame only (under a minute)
    uv run python -m bench.bench_tui --seconds 60    # shorter CPU windows

Every program runs in a real pseudo-terminal of the given size (the dashboard refuses to run without
one), whose output this script reads and throws away as a terminal would. CPU is psutil's user+system
time of the opstui process itself over a window that starts after the demo world is up; the demo's
Redis, PostgreSQL and simulated backend are other processes and are not counted. The same window is
measured for `opstui demo --headless` (the daemon: the same engine and sources, no screen), so the
difference is what the screen costs. Time to first frame is compared with a minimal Textual app
started the same way in the same run.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import select
import statistics
import struct
import sys
import tempfile
import termios
import textwrap
import time
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

import psutil

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
    """No user config or state: every run starts from the same place."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "OPSTUI_", "TEXTUAL"))}
    env.update(TERM="xterm-256color", COLORTERM="truecolor", HOME=str(home))
    for name in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
        env[name] = str(home / name.lower())
    return env


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def measure_cpu(
    argv: Sequence[str], *, size: tuple[int, int], warmup: float, seconds: float, home: Path
) -> dict[str, float]:
    """CPU % of one core and RSS of the process running `argv`, over `seconds` after `warmup`."""
    term = Terminal(argv, size=size, env=environment(home), cwd=home)
    try:
        term.drain(warmup)
        before, started = cpu_seconds(term.pid), time.perf_counter()
        term.drain(seconds)
        used, wall = cpu_seconds(term.pid) - before, time.perf_counter() - started
        rss = psutil.Process(term.pid).memory_info().rss
    finally:
        term.stop()
    return {"cpu_percent": 100.0 * used / wall, "cpu_seconds": used, "wall_seconds": wall, "rss_mib": rss / 2**20}


def measure_startup(argv: Sequence[str], marker: bytes, *, size: tuple[int, int], home: Path) -> float:
    term = Terminal(argv, size=size, env=environment(home), cwd=home)
    try:
        return term.wait_for(marker, timeout=60)
    finally:
        term.stop()


def startup(runs: int, home: Path) -> None:
    minimal = home / "minimal_app.py"
    minimal.write_text(MINIMAL_APP)
    python = sys.executable
    cases = [
        ("minimal Textual app, first frame", [python, str(minimal)], b"minimal-textual-app-ready"),
        ("opstui, first frame", [python, "-m", "opstui"], b"no alerts"),
        ("opstui, first frame with data (host memory)", [python, "-m", "opstui"], b"% used"),
    ]
    print(f"time to first frame, 160x48, median of {runs} runs (min-max)")
    for label, argv, marker in cases:
        times = [measure_startup(argv, marker, size=(160, 48), home=home) for _ in range(runs)]
        print(f"  {label:<46} {statistics.median(times):.3f} s  ({min(times):.3f}-{max(times):.3f})")


def cpu(seconds: float, warmup: float, home: Path) -> None:
    python = sys.executable
    print(f"CPU over {seconds:.0f} s after {warmup:.0f} s of warm-up, `opstui demo` (refresh 2s, sources every 2s)")
    cases = [
        ("opstui demo --headless (engine, no screen)", [python, "-m", "opstui", "demo", "--headless"], (80, 24)),
        ("opstui demo, TUI at 80x24", [python, "-m", "opstui", "demo"], (80, 24)),
        ("opstui demo, TUI at 160x48", [python, "-m", "opstui", "demo"], (160, 48)),
    ]
    for label, argv, size in cases:
        result = measure_cpu(argv, size=size, warmup=warmup, seconds=seconds, home=home)
        print(
            f"  {label:<44} {result['cpu_percent']:5.2f} % of one core "
            f"({result['cpu_seconds']:.2f} s CPU in {result['wall_seconds']:.0f} s), RSS {result['rss_mib']:.0f} MiB"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("startup", "cpu"), help="run one of the two measurements")
    parser.add_argument("--seconds", type=float, default=180.0, help="CPU window per case (default 180)")
    parser.add_argument("--warmup", type=float, default=25.0, help="seconds before the CPU window (default 25)")
    parser.add_argument("--runs", type=int, default=7, help="start-ups per case (default 7)")
    args = parser.parse_args()
    print(
        f"opstui TUI benchmark · Python {sys.version.split()[0]} · textual {version('textual')} · "
        f"{psutil.cpu_count()} CPUs · Linux {os.uname().release}"
    )
    with tempfile.TemporaryDirectory(prefix="opstui-bench-") as tmp:
        home = Path(tmp)
        if args.only in (None, "startup"):
            startup(args.runs, home)
        if args.only in (None, "cpu"):
            cpu(args.seconds, args.warmup, home)


if __name__ == "__main__":
    main()
