"""`opstui demo` watches its Redis queue, Redis memory, message activity, the batch lock, the retry table, the
dispatch log and /health, all read without errors from the moment the demo's batch has run once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from opstui.demo import DemoWorld


def test_the_demo_config_watches_every_data_source() -> None:
    with DemoWorld() as world:
        deadline = time.monotonic() + 40
        while not (world.logs / "dispatch.log").exists():  # the batch's first run, at most 20 s away
            assert time.monotonic() < deadline, "the demo batch never wrote its dispatch log"
            time.sleep(0.2)
        result = subprocess.run(
            [sys.executable, "-m", "opstui", "-c", str(world.config_path), "check", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ},
        )
        doc = json.loads(result.stdout)
    sources = doc["sources"]
    for name in ("redis main", "postgres main", "dispatch daily report", "health api"):
        assert sources[name]["ok"], (name, sources[name]["error"])
    queues = {q["name"]: q for q in doc["queues"]}
    assert queues["incoming"]["warn"] == 40 and queues["incoming"]["crit"] == 120
    assert queues["amoCRM retries"]["kind"] == "sql"
    assert doc["memory"]["redis"][0]["used_bytes"] > 0
    lock = doc["locks"][0]
    assert lock["name"] == "daily batch" and lock["expected_holder"] == f"batch@{os.uname().nodename}/*"
    assert lock["state"] in ("held", "free")
    assert doc["dispatch"][0]["name"] == "daily report" and doc["dispatch"][0]["error"] is None
    assert doc["activity"][0]["name"] == "messages handled"
    assert {c["name"] for c in doc["health"][0]["components"]} == {"redis", "database", "whatsapp"}
