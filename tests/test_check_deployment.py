"""`opstui check --json` against a small real deployment reports each figure as the systems themselves count it:
rq's and kombu's own counts, BullMQ's getJobCounts, SQL counts, the lock row, the dispatch log's lines and the
health endpoint's components."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis

from opstui.demo.backend import LOCK_TABLE
from opstui.demo.servers import EmbeddedPostgres
from queue_libs import BULLMQ_SCRIPT, run_node


def check_json(config: Path) -> tuple[int, dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, "-m", "opstui", "-c", str(config), "check", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
    )
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout)


@pytest.fixture
def health_url() -> Iterator[str]:
    """A /health that says what the demo's does during an outage: WhatsApp disconnected."""
    body = json.dumps(
        {
            "status": "degraded",
            "checks": {"redis": {"status": "ok"}, "database": {"status": "ok"}, "whatsapp": {"status": "disconnected"}},
        }
    ).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/health"
    server.shutdown()
    server.server_close()


def by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in items}


def test_check_json_equals_what_the_systems_say(
    redis_url: str, pg_dsn: str, postgres_server: EmbeddedPostgres, health_url: str, write_config: Any, tmp_path: Path
) -> None:
    from celery import Celery
    from rq import Queue
    from rq.worker import SimpleWorker

    r = redis.Redis.from_url(redis_url)
    q = Queue("default", connection=r)
    q.enqueue("builtins.int", "x")  # fails
    SimpleWorker([q], connection=r).work(burst=True)
    for n in range(4):
        q.enqueue("builtins.len", [n])
    q.enqueue_in(timedelta(minutes=5), "builtins.len", [9])
    app = Celery("deploy", broker=redis_url)
    for priority in (0, 5, 9):
        app.send_task("t.x", queue="celery", priority=priority)
    r.lpush("queue:incoming", *range(162))
    r.set("lock:batch", "batch@vps-1", px=60_000)
    r.set("last-msg:chat-1", str(time.time() - 30))

    database = pg_dsn.rsplit("/", 1)[1]
    postgres_server.psql(LOCK_TABLE, database)
    postgres_server.psql(
        "INSERT INTO batch_locks (lock_key, instance_id, expires_at) VALUES ('daily_batch', 'batch@vps-1', "
        "now() + interval '30 seconds'); INSERT INTO failed_amocrm_sync (lead_id, error) "
        "SELECT g, '429' FROM generate_series(1, 6) g",
        database,
    )
    log = tmp_path / "dispatch.log"
    lines = [{"where": "dailyReport", "phase": "start"}]
    lines += [{"where": "processUser", "status": "completed", "user": n} for n in range(9)]
    lines += [{"where": "sendToMonitoringBot", "phase": "after_send", "success": True, "user": n} for n in range(7)]
    lines += [{"where": "sendToMonitoringBot", "phase": "send_failed", "user": 8}]
    log.write_text("".join(json.dumps(line) + "\n" for line in lines) + "Unhandled rejection\n")

    config = write_config(f"""
[host]
enabled = false

[[redis]]
url = "{redis_url}"
[[redis.queues]]
name = "default"
kind = "rq"
[[redis.queues]]
name = "celery"
kind = "celery"
[[redis.queues]]
name = "incoming"
key = "queue:incoming"
warn = 100
[[redis.locks]]
name = "batch (redis)"
key = "lock:batch"
expected_holder = "batch@*"
[[redis.activity]]
name = "messages"
pattern = "last-msg:*"

[[postgres]]
dsn = "{pg_dsn}"
[[postgres.queues]]
name = "amoCRM retries"
table = "failed_amocrm_sync"
[[postgres.locks]]
name = "daily batch"
key = "daily_batch"
expected_holder = "batch@*"

[[dispatch]]
name = "daily report"
path = "{log}"

[[health]]
name = "api"
url = "{health_url}"
""")
    status, doc = check_json(config)

    queues = by_name(doc["queues"])
    # rq: Queue.count is LLEN (no write); the registry counts clean up first, so they are taken after ours.
    assert queues["default"]["depth"] == q.count == 4
    assert queues["default"]["parts"]["scheduled"] == q.scheduled_job_registry.count == 1
    assert queues["default"]["parts"]["failed"] == q.failed_job_registry.count == 1
    with app.connection_for_write() as conn:
        assert queues["celery"]["depth"] == conn.default_channel.queue_declare(queue="celery").message_count == 3
    assert queues["incoming"]["depth"] == r.llen("queue:incoming") == 162
    assert queues["incoming"]["level"] == "warning"
    sql_count = int(postgres_server.psql("SELECT count(*) FROM failed_amocrm_sync", database))
    assert queues["amoCRM retries"]["depth"] == sql_count == 6

    locks = by_name(doc["locks"])
    assert locks["batch (redis)"]["state"] == "held" and locks["batch (redis)"]["holder"] == "batch@vps-1"
    holder = postgres_server.psql("SELECT instance_id FROM batch_locks WHERE lock_key = 'daily_batch'", database)
    assert locks["daily batch"]["state"] == "held" and locks["daily batch"]["holder"] == holder.strip()
    assert locks["daily batch"]["expires_at"].endswith("Z")

    dispatch = by_name(doc["dispatch"])["daily report"]
    assert (dispatch["processed"], dispatch["sent"], dispatch["failed"]) == (9, 7, 1)
    assert dispatch["mismatch"] is True and dispatch["skipped_lines"] == 1

    health = by_name(doc["health"])["api"]
    assert health["ok"] is False and health["status_code"] == 503
    assert [c["name"] for c in health["components"] if not c["ok"]] == ["whatsapp"]
    assert by_name(doc["activity"])["messages"]["last_at"].endswith("Z")
    assert doc["memory"]["redis"][0]["used_bytes"] > 0

    assert all(source["ok"] for source in doc["sources"].values()), doc["sources"]
    assert status == 2 and "health api failing: whatsapp disconnected" in doc["reasons"]


def test_check_json_equals_bullmq_get_job_counts(redis_url: str, write_config: Any, tmp_path: Path) -> None:
    theirs = run_node(BULLMQ_SCRIPT, tmp_path, "bullmq6", redis_url, "paused")
    config = write_config(f"""
[host]
enabled = false
[[redis]]
url = "{redis_url}"
[[redis.queues]]
name = "orders"
kind = "bullmq"
""")
    _, doc = check_json(config)
    orders = by_name(doc["queues"])["orders"]
    counts = theirs["counts"]
    assert orders["parts"]["waiting"] == counts["waiting"]
    assert orders["depth"] == counts["waiting"] + counts["prioritized"]
    for part in ("prioritized", "active", "delayed", "failed", "completed"):
        assert orders["parts"][part] == counts[part], part
    assert orders["paused"] is True is theirs["paused"]
