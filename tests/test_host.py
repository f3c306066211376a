"""The host source's biggest processes, and the process table both it and the processes source sweep."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from opstui.sources import _proctable
from opstui.sources.host import HostSource

HOG = """
import sys, time
block = bytearray(300 * 1024 * 1024)
for i in range(0, len(block), 4096):
    block[i] = 1  # touch every page, so it is resident
print("ready", flush=True)
end = time.monotonic() + 60
while time.monotonic() < end:
    pass
"""


@pytest.fixture
def hog() -> Iterator[subprocess.Popen[str]]:
    """A process with 300 MiB resident that keeps a core busy."""
    proc = subprocess.Popen([sys.executable, "-c", HOG, "opstui-test-hog"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    yield proc
    proc.kill()
    proc.wait()
    proc.stdout.close()


async def test_the_biggest_process_is_listed_with_its_memory_and_cpu(hog: subprocess.Popen[str]) -> None:
    # Room for other big processes of a busy machine above ours.
    source = HostSource(interval=2, timeout=2, top_processes=40)
    first = (await source.collect()).host
    await asyncio.sleep(0.5)
    second = (await source.collect()).host
    assert first is not None and second is not None
    mine = next(p for p in second.top if p.pid == hog.pid)
    assert mine.name.startswith("python")
    assert mine.rss_bytes >= 300 * 1024 * 1024
    assert mine.cpu_percent is not None and mine.cpu_percent > 10  # busy since the first read
    assert 1 <= len(second.top) <= 40
    assert [p.rss_bytes for p in second.top] == sorted((p.rss_bytes for p in second.top), reverse=True)


def test_without_proc_the_table_comes_from_psutil_and_says_the_same(hog: subprocess.Popen[str]) -> None:
    from_proc = {p.pid: p for p in _proctable.scan(cmdline=True)}
    from_psutil = {p.pid: p for p in _proctable._scan_psutil(cmdline=True)}
    for table in (from_proc, from_psutil):
        entry = table[hog.pid]
        assert entry.argv is not None and entry.argv[-1] == "opstui-test-hog"
        assert entry.rss_bytes >= 300 * 1024 * 1024 and not entry.zombie
    # Processes that do not rename themselves while we look (kernel workers do).
    for pid in (hog.pid, os.getpid(), 1):
        a, b = from_proc[pid], from_psutil[pid]
        assert (a.ppid, a.name, a.argv) == (b.ppid, b.name, b.argv)
        assert abs(a.created - b.created) < 0.05


def test_a_long_name_of_multi_byte_characters_is_completed_from_the_command_line(tmp_path: Path) -> None:
    # 14 characters, 28 bytes: the kernel keeps 15 bytes, cut in the middle of the eighth letter.
    program = tmp_path / "воркер-очереди"
    program.symlink_to("/bin/sleep")
    proc = subprocess.Popen([str(program), "30"])
    try:
        for _ in range(500):  # until the exec has happened and the kernel renamed the child
            with open(f"/proc/{proc.pid}/stat", "rb") as stat:
                if "воркер".encode() in stat.read():
                    break
            time.sleep(0.02)
        entry = next(p for p in _proctable.scan(cmdline=True) if p.pid == proc.pid)
        assert entry.name == "воркер-очереди"
    finally:
        proc.kill()
        proc.wait()
