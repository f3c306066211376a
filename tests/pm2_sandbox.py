"""A private, real PM2 daemon for tests and benchmarks: its own PM2_HOME, and nothing of it left afterwards.

Used by tests/test_pm2.py (through fixtures) and bench/pm2.py.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
LOCAL_NODE = REPO / ".ci" / "node"
"""Where `.ci/run` installs pm2@7 with npm (ignored by git); the fixture installs there too when npm exists."""


def find_pm2(*, install: bool = True) -> tuple[Path | None, str]:
    """The pm2 executable (on PATH, or installed with npm into .ci/node), or None and the reason there is none."""
    if shutil.which("node") is None:
        return None, "node is not installed, so PM2 cannot run here"
    local = LOCAL_NODE / "node_modules" / ".bin" / "pm2"
    on_path = shutil.which("pm2")
    if on_path:
        return Path(on_path), ""
    if local.exists():
        return local, ""
    if not install or shutil.which("npm") is None:
        return None, "pm2 is not installed and npm is not available to install it"
    result = subprocess.run(
        ["npm", "install", "--prefix", str(LOCAL_NODE), "--no-audit", "--no-fund", "--loglevel=error", "pm2@7"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0 or not local.exists():
        return None, f"npm install pm2@7 failed: {result.stderr.strip().splitlines()[-1:]}"
    return local, ""


class PM2Sandbox:
    """A PM2 daemon of our own: PM2_HOME in a short temp dir (unix socket paths must stay under 108 bytes)."""

    def __init__(self, pm2: Path) -> None:
        self.pm2 = pm2
        self.home = Path(tempfile.mkdtemp(prefix="opstui-pm2-"))
        self.apps = self.home / "apps"
        self.apps.mkdir()

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "PM2_HOME": str(self.home), **extra}

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.pm2), *args], env=env or self.env(), capture_output=True, text=True, timeout=60, check=True
        )

    def app(self, name: str, source: str) -> Path:
        """A node script for PM2 to run."""
        path = self.apps / f"{name}.js"
        path.write_text(source)
        return path

    def start(self, script: Path, name: str, *options: str, env: dict[str, str] | None = None) -> None:
        self.run("start", str(script), "--name", name, *options, env=env)

    def daemon_pid(self) -> int | None:
        try:
            return int((self.home / "pm2.pid").read_text())
        except (OSError, ValueError):
            return None

    def close(self) -> None:
        """Stop the daemon and every app, then delete the home."""
        pid = self.daemon_pid()
        if pid is not None and psutil.pid_exists(pid):
            with contextlib.suppress(subprocess.SubprocessError):
                subprocess.run([str(self.pm2), "kill"], env=self.env(), capture_output=True, timeout=30)
        # A daemon that was killed leaves its apps running, and a stuck one may ignore `pm2 kill`. The daemon's
        # title names its home ("PM2 v7.0.4: God Daemon (/tmp/opstui-pm2-...)") and the apps live in it.
        for proc in psutil.process_iter(["cmdline"]):
            with contextlib.suppress(psutil.Error):
                if str(self.home) in " ".join(proc.info["cmdline"] or []):
                    proc.send_signal(signal.SIGKILL)
        shutil.rmtree(self.home, ignore_errors=True)


def wait_until(predicate, timeout: float = 15.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(0.05)
