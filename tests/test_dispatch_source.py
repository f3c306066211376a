"""Dispatch counts from a JSON-lines log: the latest run found on start, then followed line by line through
appends, new runs, rotation and truncation, without ever reading the whole file again."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from opstui.config.data import DispatchLogConfig
from opstui.model import DispatchInfo
from opstui.sources.dispatch import DispatchLogSource
from opstui.sources.files import READ_CHUNK


def line(**fields: Any) -> str:
    fields.setdefault("ts", time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z")
    return json.dumps(fields) + "\n"


START = line(where="dailyReport", phase="start")
PROCESSED = line(where="processUser", status="completed")
SENT = line(where="sendToMonitoringBot", phase="after_send", success=True)
FAILED = line(where="sendToMonitoringBot", phase="send_failed")


def run(processed: int, sent: int, failed: int = 0) -> str:
    return START + PROCESSED * processed + SENT * sent + FAILED * failed


class Follower:
    """A dispatch source on one file, read tick by tick."""

    def __init__(self, path: Path, **options: Any) -> None:
        self.source = DispatchLogSource(DispatchLogConfig(name="daily", path=str(path), **options))

    def tick(self) -> DispatchInfo:
        return asyncio.run(self.source.collect()).dispatch[0]


def counts(info: DispatchInfo) -> tuple[int, int, int, int]:
    return info.processed, info.sent, info.failed, info.skipped_lines


def test_the_latest_run_is_found_on_start_and_followed(tmp_path: Path) -> None:
    log = tmp_path / "dispatch.log"
    log.write_text(run(20, 20) + run(12, 10, 1) + "Error: socket hang up\n    at TLSSocket\n" + PROCESSED)
    follower = Follower(log)
    first = follower.tick()
    assert counts(first) == (13, 10, 1, 2)
    assert first.mismatch and first.run_started_at is not None and first.error is None
    with log.open("a") as out:
        out.write(SENT * 2 + "not json either\n")
    assert counts(follower.tick()) == (13, 12, 1, 3)
    with log.open("a") as out:
        out.write(run(3, 3))
    after = follower.tick()
    assert counts(after) == (3, 3, 0, 0) and not after.mismatch


def test_a_line_being_written_when_opstui_starts_is_not_lost(tmp_path: Path) -> None:
    log = tmp_path / "dispatch.log"
    log.write_text(run(2, 1) + SENT[:20])
    follower = Follower(log)
    assert counts(follower.tick()) == (2, 1, 0, 0)
    with log.open("a") as out:
        out.write(SENT[20:])
    assert counts(follower.tick()) == (2, 2, 0, 0)


def test_rotation_and_truncation_keep_counting(tmp_path: Path) -> None:
    log = tmp_path / "dispatch.log"
    log.write_text(run(5, 2))
    follower = Follower(log)
    assert counts(follower.tick()) == (5, 2, 0, 0)
    with log.open("a") as out:
        out.write(SENT)  # written just before the rotation: must not be lost
    log.rename(tmp_path / "dispatch.log.1")
    log.write_text(SENT * 2)  # the run goes on in the new file
    assert counts(follower.tick()) == (5, 5, 0, 0)
    log.write_text(run(1, 0))  # truncated and rewritten (`> file`)
    assert counts(follower.tick()) == (1, 0, 0, 0)


def test_the_file_is_never_read_again_from_the_start(tmp_path: Path) -> None:
    log = tmp_path / "dispatch.log"
    log.write_text(run(4, 4))
    follower = Follower(log)
    assert counts(follower.tick()) == (4, 4, 0, 0)
    # Overwrite the old lines in place (same size): a reader that re-reads the file would count differently.
    text = log.read_text()
    with log.open("r+") as out:
        out.write(text.replace("processUser", "processUzer"))
    with log.open("a") as out:
        out.write(PROCESSED)
    assert counts(follower.tick()) == (5, 4, 0, 0)


def test_a_file_that_does_not_exist_yet_is_no_run_logged_not_an_outage(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "dispatch.log"
    follower = Follower(log)
    info = follower.tick()
    assert counts(info) == (0, 0, 0, 0) and info.error is None and not info.mismatch
    assert follower.source.detail == f"{log} does not exist yet: no run logged"
    log.parent.mkdir()
    log.write_text(run(2, 2))
    assert counts(follower.tick()) == (2, 2, 0, 0)


@pytest.mark.parametrize("straddle", [True, False])
def test_the_start_of_the_latest_run_is_found_across_read_chunks(tmp_path: Path, straddle: bool) -> None:
    """The start line straddles a read-chunk boundary (counted from the end), or lies megabytes before the end."""
    log = tmp_path / "dispatch.log"
    filler = line(where="processUser", status="started", pad="x" * 300)
    body = PROCESSED * 7 + SENT * 6
    # Bytes after the start line, so that the chunk boundary falls inside it or far after it.
    after = READ_CHUNK - len(START) // 2 if straddle else 3 * READ_CHUNK
    fillers, rest = divmod(after - len(body), len(filler))
    overhead = len(line(pad=""))
    fillers, rest = (fillers - 1, rest + len(filler)) if rest < overhead else (fillers, rest)
    with log.open("w") as out:
        out.write(run(1000, 1000) + filler * 3000)
        start_at = out.tell()
        out.write(START + body + filler * fillers + line(pad="y" * (rest - overhead)))
    boundary = os.path.getsize(log) - READ_CHUNK
    assert (start_at < boundary < start_at + len(START)) is straddle
    assert counts(Follower(log).tick()) == (7, 6, 0, 0)


def test_no_start_within_lookback_says_so_and_the_next_run_counts(tmp_path: Path) -> None:
    log = tmp_path / "dispatch.log"
    log.write_text(run(3, 3) + PROCESSED * 5000)
    follower = Follower(log, lookback="64KB")
    first = follower.tick()
    assert counts(first) == (0, 0, 0, 0)
    assert first.error is not None and first.error.startswith('no run start {"where": "dailyReport", "phase": "start"}')
    assert "in the last 64.0 KiB" in first.error
    with log.open("a") as out:
        out.write(run(2, 1))
    second = follower.tick()
    assert counts(second) == (2, 1, 0, 0) and second.error is None


def test_a_time_window_instead_of_a_start_line(tmp_path: Path) -> None:
    log = tmp_path / "dispatch.log"
    old = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 7200))
    log.write_text(
        line(where="processUser", status="completed", ts=old) * 5
        + line(where="processUser", status="completed", ts=time.time() - 60) * 3
        + line(where="sendToMonitoringBot", phase="after_send", success=True, ts=int(time.time() * 1000)) * 2
        + START
    )
    info = Follower(log, window="1h").tick()
    assert counts(info) == (3, 2, 0, 0)
    assert info.run_started_at == pytest.approx(time.time() - 3600, abs=2)


def test_custom_rules_nested_fields_and_strict_booleans(tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    log.write_text(
        json.dumps({"event": {"type": "report"}, "stage": "begin"})
        + "\n"
        + json.dumps({"event": {"type": "user"}, "ok": True}) * 1
        + "\n"
        + json.dumps({"event": {"type": "delivery"}, "ok": 1})  # 1 is not true
        + "\n"
        + json.dumps({"event": {"type": "delivery"}, "ok": True})
        + "\n"
        + "[1, 2]\n"
    )
    follower = Follower(
        log,
        start={"stage": "begin"},
        processed={"event.type": "user"},
        sent={"event.type": "delivery", "ok": True},
        failed={"event.type": "delivery", "ok": False},
    )
    assert counts(follower.tick()) == (1, 1, 0, 1)
