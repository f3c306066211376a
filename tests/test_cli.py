"""The `opstui` command as scripts and cron use it: output, JSON shape and exit status."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def opstui(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "opstui", *args], capture_output=True, text=True, cwd=cwd, env={**os.environ}, timeout=60
    )


def test_check_json_describes_this_host(tmp_path: Path) -> None:
    result = opstui("check", "--json", cwd=tmp_path)
    assert result.returncode in (0, 1, 2)
    doc = json.loads(result.stdout)
    assert {"status", "sources", "processes", "queues", "memory", "locks", "dispatch", "health", "alerts"} <= set(doc)
    assert doc["status"] in ("ok", "warning", "critical")
    host = doc["memory"]["host"]
    assert 0 < host["used_percent"] < 100
    assert host["total_bytes"] > host["available_bytes"] > 0
    assert host["read_at"].endswith("Z")
    assert doc["sources"]["host"]["ok"] is True
    assert len(host["top"]) == 8


def test_check_exit_status_follows_the_worst_finding(write_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # A Redis nobody listens on: its source fails, which is critical, exit 2.
    from opstui.demo.servers import free_port

    port = free_port()
    path = write_config(f'[[redis]]\nname = "main"\nurl = "redis://127.0.0.1:{port}/0"\n')
    result = opstui("-c", str(path), "check", cwd=tmp_path)
    assert result.returncode == 2
    assert "status: CRITICAL" in result.stdout
    assert "FAIL  redis main" in result.stdout and f"connection refused at 127.0.0.1:{port}" in result.stdout


def test_check_text_is_a_table_people_can_read(tmp_path: Path) -> None:
    result = opstui("check", cwd=tmp_path)
    first = result.stdout.splitlines()[0]
    assert "status: OK" in first or "status: WARNING" in first or "status: CRITICAL" in first
    assert "\nSOURCES\n" in result.stdout and "\nMEMORY\n" in result.stdout
    assert not [line for line in result.stdout.splitlines() if line != line.rstrip()], "no trailing spaces"


def test_help_and_version(tmp_path: Path) -> None:
    result = opstui("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in ("daemon", "check", "config", "demo"):
        assert command in result.stdout
    version = opstui("--version", cwd=tmp_path)
    assert version.stdout.startswith("opstui ")


def test_unknown_command_is_a_usage_error_not_a_traceback(tmp_path: Path) -> None:
    result = opstui("chekc", cwd=tmp_path)
    assert result.returncode == 2
    assert "invalid choice: 'chekc'" in result.stderr
    assert "Traceback" not in result.stderr


def test_json_item_levels_agree_with_the_alerts_of_the_same_run(write_config, redis_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import redis

    client = redis.Redis.from_url(redis_url)
    client.lpush("queue:incoming", *range(500))
    client.set("queue:broken", "not a list")
    path = write_config(
        f'[[redis]]\nname = "main"\nurl = "{redis_url}"\n'
        '[[redis.queues]]\nname = "incoming"\nkey = "queue:incoming"\n'
        '[[redis.queues]]\nname = "broken"\nkey = "queue:broken"\n'
    )
    doc = json.loads(opstui("-c", str(path), "check", "--json", cwd=tmp_path).stdout)
    levels = {q["name"]: q["level"] for q in doc["queues"]}
    # No thresholds of its own: the alerts.queue_depth defaults (warning at 100) judge it, as the alerts do.
    assert levels == {"incoming": "warning", "broken": "warning"}
    summaries = [a["summary"] for a in doc["alerts"]]
    assert "queue incoming has 500 waiting (limit 100)" in summaries
    assert any(s.startswith("queue broken cannot be read") for s in summaries)
    assert all(isinstance(a["since"], str | None) for a in doc["alerts"])


def test_options_show_only_where_they_mean_something(tmp_path: Path) -> None:
    check = opstui("check", "--help", cwd=tmp_path).stdout
    assert "--config" in check and "--theme" not in check and "--read-only" not in check
    demo = opstui("demo", "--help", cwd=tmp_path).stdout
    assert "--theme" in demo and "--read-only" in demo
    assert "--read-only" in opstui("action", "run", "--help", cwd=tmp_path).stdout
    assert "--read-only" in opstui("daemon", "--help", cwd=tmp_path).stdout


def test_a_directory_given_as_the_config_says_so(tmp_path: Path) -> None:
    result = opstui("-c", str(tmp_path), "check", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == f"opstui: config error: {tmp_path}: is a directory, not a config file (given by --config)\n"
