"""Last activity from a log file: the newest line's time field (a stack trace after it does not hide it), or the
file's modification time."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from opstui.config.data import LogActivityConfig
from opstui.model import ActivityInfo
from opstui.sources.activity import LogActivitySource


def reader(path: Path, **options: Any) -> Any:
    source = LogActivitySource(LogActivityConfig(name="bot", path=str(path), **options))

    def tick() -> ActivityInfo:
        return asyncio.run(source.collect()).activity[0]

    return tick


def test_the_newest_line_with_a_time_field(tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    log.write_text(
        json.dumps({"ts": "2024-05-01T10:00:00Z", "msg": "sent"})
        + "\n"
        + json.dumps({"ts": "2024-05-01T10:05:00Z", "msg": "sent"})
        + "\nTypeError: undefined is not a function\n    at handler (bot.js:12)\n"
    )
    tick = reader(log, timestamp="ts", max_age=600)
    first = tick()
    assert first.last_at == 1714557900.0 and first.max_age == 600
    assert first.detail == f"ts of the newest line of {log}"
    with log.open("a") as out:
        out.write("no time here\n")
    assert tick().last_at == 1714557900.0  # nothing newer: the last known time stays
    with log.open("a") as out:
        out.write(json.dumps({"ts": 1714558000123, "msg": "sent"}) + "\n")
    assert tick().last_at == 1714558000.123


def test_the_file_modification_time(tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    tick = reader(log)
    nothing = tick()  # nothing logged yet: no activity to show, and no outage (the inactive rule judges it)
    assert nothing.last_at is None and nothing.detail == f"{log} does not exist yet"
    log.write_text("started\n")
    os.utime(log, (time.time() - 300, time.time() - 300))
    info = tick()
    assert info.last_at == pytest.approx(time.time() - 300, abs=1)
    assert info.detail == f"modification time of {log}"
