"""`opstui silence`, `opstui notify test`, `opstui report` and `opstui check` as a person at a terminal uses them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from opstui.notify.sender import STATUS_KEY
from opstui.state import StateStore
from telegram_api import ALERTS_CHAT, TOKEN, FakeBotAPI

SECRET_PART = TOKEN.split(":", 1)[1]


def opstui(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "opstui", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def telegram_config(write_config, api: FakeBotAPI, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    return write_config(
        f'[general]\ninstance = "bot-test"\nstate_dir = "{tmp_path / "state"}"\n\n'
        f'[telegram]\ntoken = "${{TELEGRAM_BOT_TOKEN}}"\nchat_id = {ALERTS_CHAT}\napi_base = "{api.url}"\n'
    )


def test_silence_add_list_and_remove(write_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write_config("")
    made = opstui("-c", str(path), "silence", "worker", "2h", "-m", "deploying", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("silence 1 on 'worker' until ")
    assert made.stdout.rstrip().endswith("(deploying)") and " by cli " in made.stdout
    listed = opstui("-c", str(path), "silence", cwd=tmp_path)
    assert listed.stdout == made.stdout
    removed = opstui("-c", str(path), "silence", "--remove", "1", cwd=tmp_path)
    assert removed.returncode == 0 and removed.stdout.startswith("ended silence 1 on 'worker'")
    assert opstui("-c", str(path), "silence", cwd=tmp_path).stdout == "no active silences\n"


def test_silence_with_a_bad_duration_says_how_to_write_one(write_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write_config("")
    result = opstui("-c", str(path), "silence", "worker", "two hours", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == ("opstui: 'two hours' is not a duration; write it like '30s', '5m', '1h30m' or '1d'\n")
    missing = opstui("-c", str(path), "silence", "worker", cwd=tmp_path)
    assert missing.returncode == 2 and "say for how long" in missing.stderr


def test_notify_test_reports_exactly_what_telegram_answered(
    write_config, tmp_path: Path, telegram_api: FakeBotAPI
) -> None:  # type: ignore[no-untyped-def]
    path = telegram_config(write_config, telegram_api, tmp_path)
    ok = opstui("-c", str(path), "notify", "test", cwd=tmp_path, env={"TELEGRAM_BOT_TOKEN": TOKEN})
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == f"Telegram accepted it: message_id 1 in chat {ALERTS_CHAT} (supergroup 'Alerts')\n"
    assert telegram_api.texts() == [
        "✅ opstui test message from bot-test\nAlerts and reports will arrive in this chat."
    ]

    wrong = opstui(
        "-c", str(path), "notify", "test", cwd=tmp_path, env={"TELEGRAM_BOT_TOKEN": "123456:TEST-wrong-token-xyz"}
    )
    assert wrong.returncode == 2
    assert wrong.stderr == (
        "sendMessage: Telegram answered 401: Unauthorized (the token is wrong or was revoked (get it from "
        "@BotFather), or api_base is not a Bot API)\n"
    )
    telegram_api.chats.pop(ALERTS_CHAT)
    gone = opstui("-c", str(path), "notify", "test", cwd=tmp_path, env={"TELEGRAM_BOT_TOKEN": TOKEN})
    assert gone.returncode == 2
    assert gone.stderr.startswith("sendMessage: Telegram answered 400: Bad Request: chat not found (the bot cannot")
    for result in (ok, wrong, gone):
        assert SECRET_PART not in result.stdout + result.stderr and "TEST-wrong-token" not in result.stderr


def test_notify_test_without_telegram_says_what_to_set(write_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = opstui("-c", str(write_config("")), "notify", "test", cwd=tmp_path)
    assert result.returncode == 2
    assert "Telegram is not configured: set [telegram] token and chat_id" in result.stderr


def test_report_prints_and_sends(write_config, tmp_path: Path, telegram_api: FakeBotAPI) -> None:  # type: ignore[no-untyped-def]
    path = telegram_config(write_config, telegram_api, tmp_path)
    printed = opstui("-c", str(path), "report", cwd=tmp_path, env={"TELEGRAM_BOT_TOKEN": TOKEN})
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.startswith("📋 Daily report · bot-test\n")
    assert "No samples from the last 24 hours" in printed.stdout
    assert "Memory peak" in printed.stdout and "firing now" in printed.stdout
    assert telegram_api.texts() == []
    sent = opstui("-c", str(path), "report", "--send", cwd=tmp_path, env={"TELEGRAM_BOT_TOKEN": TOKEN})
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.rstrip().endswith(
        f"Telegram accepted it: message_id 1 in chat {ALERTS_CHAT} (supergroup 'Alerts')"
    )
    assert telegram_api.texts()[0].startswith("📋 Daily report · bot-test")


def test_check_fails_when_telegram_refuses_the_daemons_alerts(
    write_config, tmp_path: Path, telegram_api: FakeBotAPI
) -> None:  # type: ignore[no-untyped-def]
    path = telegram_config(write_config, telegram_api, tmp_path)
    store = StateStore.in_dir(tmp_path / "state")
    problem = "sendMessage: Telegram answered 401: Unauthorized"
    store.set_meta(STATUS_KEY, json.dumps({"ok": False, "problem": problem, "permanent": True, "since": 1.0}))
    store.close()
    result = opstui("-c", str(path), "check", cwd=tmp_path, env={"TELEGRAM_BOT_TOKEN": TOKEN})
    assert result.returncode == 2
    assert f"  - telegram: Telegram refuses: {problem}; fix [telegram] and restart" in result.stdout
    doc = json.loads(opstui("-c", str(path), "check", "--json", cwd=tmp_path, env={"TELEGRAM_BOT_TOKEN": TOKEN}).stdout)
    assert doc["status"] == "critical"
    assert [a["rule"] for a in doc["alerts"]] == ["delivery"]
    assert doc["checks"][0]["kind"] == "delivery"


def test_check_counts_a_silenced_alert_and_says_it_is_silenced(write_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from opstui.demo.servers import free_port

    port = free_port()  # a Redis nobody listens on: its source fails
    path = write_config(f'[[redis]]\nname = "main"\nurl = "redis://127.0.0.1:{port}/0"\n')
    opstui("-c", str(path), "silence", "redis main", "1h", cwd=tmp_path)
    result = opstui("-c", str(path), "check", cwd=tmp_path)
    assert result.returncode == 2
    assert f"  - redis main cannot be read: connection refused at 127.0.0.1:{port} (silenced)" in result.stdout
    assert "critical silenced redis main cannot be read" in " ".join(result.stdout.split())
