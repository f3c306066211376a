"""The host's process table in one pass: on Linux one read of /proc/<pid>/stat per process (plus its cmdline when
asked), about a third of what psutil's per-process calls cost; psutil elsewhere.

Sweeping the table is the biggest part of a daemon's tick (the host's biggest processes every refresh, a watched
process while it is missing); see docs/performance.md.

The resident memory comes from /proc/<pid>/stat, which on Linux 6.2 and later is the kernel's approximate
per-CPU counter; `top`, `ps` and psutil read /proc/<pid>/statm or status, so a figure may differ from theirs by
about 1 %: close enough to rank processes and alert on growth, and a third of the cost of a second file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import psutil

PROC = "/proc"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_COMM_LIMIT = 15
"""The kernel keeps the first 15 bytes of a program's name; psutil completes longer names from the cmdline."""


@dataclass(frozen=True, slots=True)
class ProcEntry:
    pid: int
    ppid: int
    name: str
    zombie: bool
    cpu_seconds: float
    """User + system CPU time used so far."""
    created: float
    """Start time, seconds since the epoch, as psutil's create_time() gives it (to within a clock tick)."""
    rss_bytes: int
    argv: tuple[str, ...] | None
    """The command line, when asked for (None: not read)."""


def scan(*, cmdline: bool = False) -> list[ProcEntry]:
    """Every process of the host (but those that vanish while being read)."""
    if not os.path.isdir(f"{PROC}/self"):
        return _scan_psutil(cmdline)
    boot = psutil.boot_time()
    found = []
    for name in os.listdir(PROC):
        if not name.isdigit():
            continue
        try:
            data = _read(f"{PROC}/{name}/stat")
            argv = _argv(name) if cmdline else None
        except OSError:  # it exited meanwhile, or it is not ours to read
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'.
        close = data.rfind(b")")
        fields = data[close + 2 :].split()
        raw = data[data.find(b"(") + 1 : close]
        comm = raw.decode("utf-8", "replace")
        # The limit is in bytes: a name of multi-byte characters is cut at 15 bytes, maybe inside a character.
        if len(raw) == _COMM_LIMIT and argv:
            full = os.path.basename(argv[0])
            comm = full if full.encode("utf-8", "replace").startswith(raw) else comm
        found.append(
            ProcEntry(
                pid=int(name),
                ppid=int(fields[1]),
                name=comm,
                zombie=fields[0] == b"Z",
                cpu_seconds=(int(fields[11]) + int(fields[12])) / CLOCK_TICKS,
                created=boot + int(fields[19]) / CLOCK_TICKS,
                rss_bytes=int(fields[21]) * PAGE_SIZE,
                argv=argv,
            )
        )
    return found


def _read(path: str) -> bytes:
    # os.open and os.read, not open(): no buffered file object per file, a third of the sweep's cost.
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.read(fd, 4096)
        if len(data) < 4096:  # procfs hands a small file over in one read
            return data
        chunks = [data]  # a long command line
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _argv(pid: str) -> tuple[str, ...]:
    data = _read(f"{PROC}/{pid}/cmdline")
    # NUL-separated; a program that rewrote its title may use spaces instead (as psutil handles it).
    parts = data.rstrip(b"\0").split(b"\0") if data.endswith(b"\0") else data.split(b" ")
    return tuple(part.decode("utf-8", "replace") for part in parts if part) if data else ()


def _scan_psutil(cmdline: bool) -> list[ProcEntry]:
    attrs = ["ppid", "name", "status", "cpu_times", "create_time", "memory_info", *(["cmdline"] if cmdline else [])]
    found = []
    for proc in psutil.process_iter(attrs):
        info = proc.info
        if info.get("create_time") is None:
            continue
        times, memory = info.get("cpu_times"), info.get("memory_info")
        found.append(
            ProcEntry(
                pid=proc.pid,
                ppid=info.get("ppid") or 0,
                name=info.get("name") or "",
                zombie=info.get("status") == psutil.STATUS_ZOMBIE,
                cpu_seconds=times.user + times.system if times else 0.0,
                created=info["create_time"],
                rss_bytes=memory.rss if memory else 0,
                argv=tuple(info.get("cmdline") or ()) if cmdline else None,
            )
        )
    return found
