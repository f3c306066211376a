"""`opstui demo`: a real world comes up, and nothing of it is left behind after Ctrl+C or a crash."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest


def start_demo() -> tuple[subprocess.Popen[str], Path]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "opstui", "demo", "--headless"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    output = ""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        # Read the pipe itself, not through readline: lines that arrive together would sit in the text
        # buffer, where select() cannot see them.
        ready, _, _ = select.select([proc.stdout], [], [], 1.0)
        if not ready:
            continue
        chunk = os.read(proc.stdout.fileno(), 65536).decode(errors="replace")
        if not chunk:
            break
        output += chunk
        found = re.search(r"demo world in (\S+);", output)
        if found and "daemon started" in output:
            return proc, Path(found.group(1))
    proc.kill()
    proc.wait()
    proc.stdout.close()
    pytest.fail(f"the demo did not start:\n{output}")


def world_processes(root: Path) -> list[psutil.Process]:
    """The demo world's processes: the groups it recorded in ROOT/pids and anything running from ROOT."""
    groups = {int(pid) for pid in (root / "pids").read_text().split()}
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            in_group = os.getpgid(proc.pid) in groups
        except ProcessLookupError:
            continue
        if in_group or str(root) in " ".join(proc.info["cmdline"] or []):
            found.append(proc)
    return found


def wait_gone(root: Path, processes: list[psutil.Process], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (root.exists() or any(p.is_running() for p in processes)):
        time.sleep(0.2)
    alive = [" ".join(p.cmdline()) for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, alive
    assert not root.exists(), f"{root} was left behind"


def test_demo_world_runs_real_servers_and_ctrl_c_tears_it_all_down() -> None:
    proc, root = start_demo()
    try:
        deadline = time.monotonic() + 20
        while True:  # the supervisor's children take a moment to start
            processes = world_processes(root)
            names = [" ".join(p.cmdline()) for p in processes]
            if sum("opstui.demo.backend" in n for n in names) >= 4 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert any("redis-server" in n for n in names)
        assert any("postgres" in n for n in names)
        assert sum("opstui.demo.backend" in n for n in names) >= 4  # supervisor, api, worker, batch
        assert (root / "opstui.toml").exists()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    wait_gone(root, processes, timeout=5)


def test_demo_world_is_cleaned_up_even_when_opstui_is_killed() -> None:
    proc, root = start_demo()
    processes = world_processes(root)
    assert len(processes) >= 6
    proc.kill()
    proc.wait(5)
    assert proc.stdout is not None
    proc.stdout.close()
    wait_gone(root, processes, timeout=15)
