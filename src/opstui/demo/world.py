"""The demo world: real Redis and PostgreSQL, a crash-looping backend, and a config that watches them.

Everything lives in one temporary directory. Leaving the `with DemoWorld()` block stops every process and
deletes the directory; if opstui is killed before it can, the reaper process does it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from opstui.demo.backend import EXPECTED_HOLDER, LOCK_KEY, LOCK_TABLE, ROLES
from opstui.demo.servers import (
    EmbeddedPostgres,
    EmbeddedRedis,
    die_with_parent,
    free_port,
    stop_process,
    wait_until,
)


class DemoWorld:
    def __init__(self, *, cycle_start: float = 0.0) -> None:
        self.cycle_start = cycle_start
        """Seconds into the backend's two-minute cycle to begin at (28 reaches the worker's crash loop at once)."""
        self.root = Path()
        self.redis: EmbeddedRedis | None = None
        self.postgres: EmbeddedPostgres | None = None
        self.backend: subprocess.Popen[bytes] | None = None
        self.reaper: subprocess.Popen[bytes] | None = None
        self.http_port = 0
        self.started = 0.0

    @property
    def config_path(self) -> Path:
        return self.root / "opstui.toml"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def __enter__(self) -> DemoWorld:
        self.root = Path(tempfile.mkdtemp(prefix="opstui-demo-"))
        self.root.chmod(0o711)  # PostgreSQL runs as its own user when we are root and must reach its dir
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        self.reaper = subprocess.Popen(
            [sys.executable, "-m", "opstui.demo.reaper", str(os.getpid()), str(self.root)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.logs.mkdir()
        # A deployment's report log exists before its first run of the day; so does the demo's.
        (self.logs / "dispatch.log").touch()
        self.redis = EmbeddedRedis(self.root / "redis").start()
        self._remember(self.redis.proc)
        self.postgres = EmbeddedPostgres(self.root / "postgres").start()
        self._remember(self.postgres.proc)
        self.postgres.psql(LOCK_TABLE)
        self.http_port = free_port()
        self.started = time.time() - self.cycle_start
        out = (self.logs / "supervisor-out.log").open("ab")
        self.backend = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "opstui.demo.backend",
                "supervisor",
                "--root",
                str(self.root),
                "--redis",
                self.redis.url,
                "--pg",
                self.postgres.dsn,
                "--http-port",
                str(self.http_port),
                "--started",
                str(self.started),
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        out.close()
        self._remember(self.backend)
        wait_until(
            self._api_answers, timeout=20, what="the demo backend", proc=self.backend, log=self.logs / "api-out.log"
        )
        self._write_recovery_script()
        self.config_path.write_text(self.config_text())

    def _api_answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.http_port), timeout=0.2):
                return True
        except OSError:
            return False

    def _remember(self, proc: subprocess.Popen[bytes] | None) -> None:
        # The reaper kills these process groups if we die without cleaning up.
        if proc is not None:
            with (self.root / "pids").open("a") as pids:
                pids.write(f"{proc.pid}\n")

    def config_text(self) -> str:
        return (
            f"""\
# The config `opstui demo` watches its simulated backend with; a real one looks much the same.
[general]
instance = "demo"
timezone = "UTC"
state_dir = "{self.root / "state"}"

[host]
interval = "2s"
top_processes = 8
{self._processes_config()}"""
            + self.data_sources_config()
            + self.actions_config()
        )

    def _processes_config(self) -> str:
        """The backend's processes, found by command line (its supervisor restarts them as PM2 would), and the
        error logs of the two that fail."""
        parts = ['\n[processes]\ninterval = "2s"\n']
        for role in ROLES:
            logs = [self.logs / f"{role}-out.log", *([self.logs / f"{role}-error.log"] if role != "api" else [])]
            pattern = rf"opstui\.demo\.backend {role} --root {re.escape(str(self.root))} "
            parts.append(
                f"\n[[processes.watch]]\nname = \"{role}\"\ncmdline = '{pattern}'\n"
                f"log_files = {json.dumps([str(path) for path in logs])}\n"
            )
        for role in ("worker", "batch"):
            parts.append(f'\n[[logs]]\nname = "{role}"\npath = "{self.logs / f"{role}-error.log"}"\n')
        return "".join(parts)

    def data_sources_config(self) -> str:
        """The demo's Redis, PostgreSQL, dispatch log and /health, as a deployment would list them."""
        assert self.redis is not None and self.postgres is not None
        return f"""
[[redis]]
name = "main"
url = "{self.redis.url}"
interval = "2s"

[[redis.queues]]
name = "incoming"
key = "queue:incoming"
# The api's bursts outrun the crash-looping worker: the queue crosses both thresholds once a cycle.
warn = 40
crit = 120

[[redis.activity]]
name = "messages handled"
pattern = "last-msg:*"
max_age = "15s"

[[postgres]]
name = "main"
dsn = "{self.postgres.dsn}"
interval = "2s"

[[postgres.queues]]
name = "amoCRM retries"
table = "failed_amocrm_sync"
warn = 3
crit = 10

[[postgres.locks]]
name = "daily batch"
key = "{LOCK_KEY}"
expected_holder = "{EXPECTED_HOLDER}"

[[dispatch]]
name = "daily report"
path = "{self.logs / "dispatch.log"}"
interval = "2s"

[[health]]
name = "api"
url = "http://127.0.0.1:{self.http_port}/health"
interval = "2s"
timeout = "2s"
"""

    # --- recovery actions: the built-ins need nothing; the team's recovery script is one more -------------

    @property
    def recovery_script(self) -> Path:
        return self.root / "recovery.sh"

    def _write_recovery_script(self) -> None:
        from opstui.demo.recovery import script_text

        assert self.redis is not None and self.postgres is not None
        self.recovery_script.write_text(script_text(self.root, self.redis.url, self.postgres.dsn))
        self.recovery_script.chmod(0o700)

    def actions_config(self) -> str:
        """The demo's recovery script as an action. Restarting the worker (r on Processes), moving the queue
        aside (m on Queues) and releasing the lock (l on Lock) are built in and need no config."""
        return """
[[actions.script]]
name = "recovery"
description = "The team's recovery script: status, or a soft restart of the worker"
script = "./recovery.sh"
modes = ["status", "soft"]
key = "R"
timeout = "30s"
"""

    def close(self) -> None:
        stop_process(self.backend)
        if self.postgres is not None:
            self.postgres.stop()
        if self.redis is not None:
            self.redis.stop()
        if self.root != Path():
            shutil.rmtree(self.root, ignore_errors=True)
        if self.reaper is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.reaper.wait(2)
            stop_process(self.reaper)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
