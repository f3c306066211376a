"""The demo's simulated bot backend: a supervisor and its api, worker and batch processes.

It behaves like the deployments opstui is for, on a two-minute cycle so every pane has something to show:
the api takes messages into a Redis queue (in bursts), the worker drains it and crash-loops for part of each
cycle so the queue backs up and recovers, the batch takes the leader lock in `batch_locks`, writes the report
dispatch log (processed vs sent vs failed, sometimes disagreeing) and now and then dies holding the lock,
which then goes stale and blocks the next runs until it is released (or taken over much later), and the
api's /health reports WhatsApp disconnected for a while. Run as
`python -m opstui.demo.backend supervisor --root DIR --redis URL --pg DSN --http-port N`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

CYCLE = 120.0
QUEUE_KEY = "queue:incoming"
LOCK_KEY = "daily_batch"
ROLES = ("api", "worker", "batch")


def phase(started: float) -> float:
    """Seconds into the current cycle."""
    return (time.time() - started) % CYCLE


def log_line(path: Path, **fields: Any) -> None:
    fields.setdefault("ts", time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z")
    with path.open("a", encoding="utf-8") as out:
        out.write(json.dumps(fields) + "\n")


def error_line(path: Path, message: str) -> None:
    with path.open("a", encoding="utf-8") as out:
        out.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} ERROR {message}\n")


# ---------------------------------------------------------------------------------------------- supervisor


def supervise(args: argparse.Namespace) -> int:
    """Run the three roles and restart any that exits, as PM2 or systemd would (1 s back-off)."""
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    children: dict[str, subprocess.Popen[bytes]] = {}
    restarts = dict.fromkeys(ROLES, 0)
    logs = Path(args.root) / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    def spawn(role: str) -> subprocess.Popen[bytes]:
        argv = [
            sys.executable,
            "-m",
            "opstui.demo.backend",
            role,
            "--root",
            args.root,
            "--redis",
            args.redis,
            "--pg",
            args.pg,
            "--http-port",
            str(args.http_port),
            "--started",
            str(args.started),
        ]
        out = (logs / f"{role}-out.log").open("ab")
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)

    for role in ROLES:
        children[role] = spawn(role)
    while not stopping.wait(0.2):
        for role, child in list(children.items()):
            if child.poll() is not None:
                restarts[role] += 1
                log_line(
                    logs / "supervisor.log",
                    event="restart",
                    role=role,
                    exit_code=child.returncode,
                    restarts=restarts[role],
                )
                if stopping.wait(1.0):
                    break
                children[role] = spawn(role)
    for child in children.values():
        with contextlib.suppress(ProcessLookupError):
            child.terminate()
    for child in children.values():
        try:
            child.wait(3)
        except subprocess.TimeoutExpired:
            child.kill()
    return 0


# ---------------------------------------------------------------------------------------------------- api


def run_api(args: argparse.Namespace) -> int:
    """The HTTP API: /health with component checks, and a stream of incoming messages into the queue."""
    import redis

    r = redis.Redis.from_url(args.redis)
    started = args.started

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/health":
                self.send_error(404)
                return
            whatsapp_down = 60 <= phase(started) < 85
            try:
                r.ping()
                redis_ok = True
            except redis.RedisError:
                redis_ok = False
            checks = {
                "redis": {"status": "ok" if redis_ok else "down"},
                "database": {"status": "ok"},
                "whatsapp": {"status": "disconnected" if whatsapp_down else "connected"},
            }
            healthy = redis_ok and not whatsapp_down
            body = json.dumps({"status": "ok" if healthy else "degraded", "checks": checks}).encode()
            self.send_response(200 if healthy else 503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", args.http_port), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    n = 0
    while True:
        # Bursts from 20 s to 60 s of each cycle arrive faster than the worker can drain them.
        rate = 7.0 if 20 <= phase(started) < 60 else 2.0
        n += 1
        r.lpush(QUEUE_KEY, json.dumps({"chat": f"chat-{n % 17}", "text": f"message {n}"}))
        time.sleep(random.expovariate(rate))


# ------------------------------------------------------------------------------------------------- worker


def run_worker(args: argparse.Namespace) -> int:
    """Drains the queue at about 4 jobs a second; from 30 s to 75 s of each cycle it crashes every few seconds."""
    import redis

    r = redis.Redis.from_url(args.redis)
    errors = Path(args.root) / "logs" / "worker-error.log"
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    born = time.time()
    crash_after = random.uniform(2.0, 5.0)
    while True:
        if 30 <= phase(args.started) < 75 and time.time() - born > crash_after:
            error_line(errors, "Unhandled rejection: ECONNRESET while calling amoCRM (lead sync aborted)")
            error_line(errors, "    at TLSSocket.onConnectEnd (node:_tls_wrap:1727:19)")
            return 1
        job = r.brpop([QUEUE_KEY], timeout=1)
        if job is None:
            continue
        payload = json.loads(job[1])
        time.sleep(0.25)
        r.set(f"last-msg:{payload['chat']}", str(time.time()), ex=86400)


# -------------------------------------------------------------------------------------------------- batch


def run_batch(args: argparse.Namespace) -> int:
    return asyncio.run(_batch(args))


LOCK_TABLE = """
CREATE TABLE IF NOT EXISTS batch_locks (
    lock_key text PRIMARY KEY,
    instance_id text NOT NULL,
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS failed_amocrm_sync (
    id bigserial PRIMARY KEY,
    lead_id bigint NOT NULL,
    error text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
"""

TAKEOVER_GRACE = 45
"""Seconds a lock must have been expired before another instance takes it over: a careful batch does not race
a holder that is only slow. Meanwhile the stale lock blocks every run, as in the incidents opstui is for."""
TAKE_LOCK = f"""
INSERT INTO batch_locks (lock_key, instance_id, expires_at) VALUES ($1, $2, now() + $3 * interval '1 second')
ON CONFLICT (lock_key) DO UPDATE
   SET instance_id = excluded.instance_id, expires_at = excluded.expires_at,
       created_at = now(), updated_at = now()
 WHERE batch_locks.expires_at < now() - interval '{TAKEOVER_GRACE} seconds'
    OR batch_locks.instance_id = excluded.instance_id
RETURNING instance_id
"""


def batch_instance(pid: int) -> str:
    """Each batch process is an instance of its own: one that restarts does not inherit its dead lock."""
    return f"batch@{os.uname().nodename}/{pid}"


EXPECTED_HOLDER = f"batch@{os.uname().nodename}/*"
"""Who may hold the lock, as the demo's config says (any batch process of this host)."""


async def _batch(args: argparse.Namespace) -> int:
    """Every 20 s: take the lock, run the report (processUser, then sendToMonitoringBot), release the lock.

    Every fourth run dies holding the lock: it stays held for 30 s, then stale until another batch process
    takes it over TAKEOVER_GRACE later (or someone releases it); some runs lose a send or fail one, so
    processed and sent disagree as they did in the incidents opstui was built for.
    """
    import asyncpg

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    db = await asyncpg.connect(args.pg)
    await db.execute(LOCK_TABLE)
    dispatch = Path(args.root) / "logs" / "dispatch.log"
    errors = Path(args.root) / "logs" / "batch-error.log"
    instance = batch_instance(os.getpid())
    run = int((time.time() - args.started) // 20)
    completed = 0  # runs of this process: it leaks, and its fourth run is its last
    while True:
        await asyncio.sleep(20 - (time.time() - args.started) % 20)
        run += 1
        holder = await db.fetchval(TAKE_LOCK, LOCK_KEY, instance, 30)
        if holder is None:
            error_line(errors, "daily batch skipped: lock held by another instance")
            continue
        log_line(dispatch, where="dailyReport", phase="start", run=run)
        users = random.randint(8, 20)
        for user in range(users):
            await asyncio.sleep(0.2)
            log_line(dispatch, where="processUser", status="completed", user=user, run=run)
            outcome = random.random()
            if run % 3 == 0 and outcome < 0.25:
                continue  # processed, never sent: the silent failure
            if outcome > 0.9:
                log_line(dispatch, where="sendToMonitoringBot", phase="send_failed", user=user, run=run)
                await db.execute(
                    "INSERT INTO failed_amocrm_sync (lead_id, error) VALUES ($1, $2)",
                    1000 + user,
                    "429 Too Many Requests",
                )
                continue
            log_line(dispatch, where="sendToMonitoringBot", phase="after_send", success=True, user=user, run=run)
            await db.execute(
                "UPDATE batch_locks SET expires_at = now() + interval '30 seconds', "
                "updated_at = now() WHERE lock_key = $1",
                LOCK_KEY,
            )
        completed += 1
        if completed % 4 == 0:
            error_line(errors, f"daily batch run {run}: killed by OOM while holding {LOCK_KEY}")
            os._exit(137)
        await db.execute("DELETE FROM batch_locks WHERE lock_key = $1 AND instance_id = $2", LOCK_KEY, instance)
        await db.execute("DELETE FROM failed_amocrm_sync WHERE created_at < now() - interval '5 minutes'")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="opstui.demo.backend")
    parser.add_argument("role", choices=("supervisor", *ROLES))
    parser.add_argument("--root", required=True)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--pg", required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--started", type=float, default=time.time())
    args = parser.parse_args(argv)
    handlers = {"supervisor": supervise, "api": run_api, "worker": run_worker, "batch": run_batch}
    try:
        return handlers[args.role](args)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
