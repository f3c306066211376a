"""The demo's recovery script, as teams write them: `recovery.sh status` says how the backend is, and
`recovery.sh soft` restarts the worker gently (SIGTERM; the supervisor starts it again) and waits to see it
back. `opstui demo` writes `recovery.sh` into its world, and its config runs it as the `recovery` action.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import psutil

from opstui.demo.backend import LOCK_KEY, QUEUE_KEY, ROLES


def script_text(root: Path, redis_url: str, dsn: str) -> str:
    """`recovery.sh`: a shell script that hands its mode to this module, with the world's addresses."""
    return (
        "#!/bin/sh\n"
        "# The demo backend's recovery script. Modes: status, soft.\n"
        f'exec "{sys.executable}" -m opstui.demo.recovery --root "{root}" --redis "{redis_url}" --pg "{dsn}" "$@"\n'
    )


def role_pid(root: str, role: str) -> int | None:
    """The pid of one of the backend's processes, found by its command line as the demo's config does."""
    wanted = ["opstui.demo.backend", role, "--root", root]
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if any(cmdline[i : i + len(wanted)] == wanted for i in range(len(cmdline))):
            return proc.pid
    return None


def say(text: str) -> None:
    print(text, flush=True)


def status(args: argparse.Namespace) -> int:
    import redis

    for role in ROLES:
        pid = role_pid(args.root, role)
        say(f"{role:<7} {'running, pid ' + str(pid) if pid else 'NOT RUNNING'}")
    say(f"queue   {QUEUE_KEY}: {redis.Redis.from_url(args.redis).llen(QUEUE_KEY)} waiting")
    say(f"lock    {LOCK_KEY}: {asyncio.run(lock_state(args.pg))}")
    return 0


async def lock_state(dsn: str) -> str:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT instance_id, expires_at < now() AS expired FROM batch_locks WHERE lock_key = $1", LOCK_KEY
        )
    finally:
        await conn.close()
    if row is None:
        return "free"
    return f"held by {row['instance_id']}" + (" (STALE: expired)" if row["expired"] else "")


def soft(args: argparse.Namespace) -> int:
    old = role_pid(args.root, "worker")
    if old is None:
        say("worker is not running; the supervisor starts it within a second")
    else:
        say(f"worker: SIGTERM to pid {old}")
        os.kill(old, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        new = role_pid(args.root, "worker")
        if new is not None and new != old:
            say(f"worker: running again as pid {new}")
            return 0
        time.sleep(0.2)
    print("worker: not back after 10s; is the supervisor running?", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recovery.sh", description="The demo backend's recovery script.")
    parser.add_argument("--root", required=True)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--pg", required=True)
    parser.add_argument("mode", choices=("status", "soft"))
    args = parser.parse_args(argv)
    return status(args) if args.mode == "status" else soft(args)


if __name__ == "__main__":
    sys.exit(main())
