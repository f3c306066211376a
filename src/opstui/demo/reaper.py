"""A watchdog for the demo world: if opstui dies without tearing the world down, it does so instead.

Started in its own session by DemoWorld as `python -m opstui.demo.reaper PARENT_PID ROOT`. It polls the
parent; when the parent is gone it stops every process group listed in ROOT/pids and deletes ROOT. When
ROOT disappears (a normal teardown), it simply exits.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time
from pathlib import Path


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_groups(pids: list[int], *, grace: float = 3.0) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def read_pids(root: Path) -> list[int]:
    try:
        return [int(line) for line in (root / "pids").read_text().split() if line.strip().isdigit()]
    except OSError:
        return []


def main(argv: list[str]) -> int:
    parent, root = int(argv[0]), Path(argv[1])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # only the parent's death ends the world
    while root.exists():
        if not alive(parent):
            kill_groups(read_pids(root))
            shutil.rmtree(root, ignore_errors=True)
            return 0
        time.sleep(0.3)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
