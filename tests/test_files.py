"""Following a log file: new lines only, across rotation, truncation and half-written lines."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from opstui.errors import SourceUnavailable
from opstui.sources.files import FollowedFile


def append(path: Path, text: str) -> None:
    with path.open("a") as handle:
        handle.write(text)


def test_starts_at_the_end_then_returns_only_new_complete_lines(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("old 1\nold 2\n")
    followed = FollowedFile(log)
    assert followed.read_new().lines == []
    append(log, "new 1\nnew 2\nhalf")
    assert followed.read_new().lines == ["new 1", "new 2"]
    append(log, " a line\n")
    assert followed.read_new().lines == ["half a line"]
    assert followed.read_new().lines == []


def test_rotation_reads_the_rest_of_the_old_file_then_the_new_one(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("")
    followed = FollowedFile(log)
    followed.read_new()
    append(log, "before rotation\nlast old")
    os.rename(log, tmp_path / "app.log.1")
    log.write_text("first new\n")
    result = followed.read_new()
    assert result.restarted
    assert result.lines == ["before rotation", "last old", "first new"]


def test_truncation_starts_again_from_the_top(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("a long line that makes the file big\n" * 10)
    followed = FollowedFile(log)
    followed.read_new()
    log.write_text("after truncate\n")
    result = followed.read_new()
    assert result.restarted and result.lines == ["after truncate"]


def test_tail_lines_reads_backwards(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("".join(f"line {i}\n" for i in range(100_000)))
    assert FollowedFile(log).tail_lines(3) == ["line 99997", "line 99998", "line 99999"]
    assert FollowedFile(log).tail_lines(0) == []


def test_invalid_utf8_and_overlong_lines_do_not_break_reading(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    followed = FollowedFile(log)
    followed.read_new()
    with log.open("ab") as handle:
        handle.write(b"bad \xff byte\n" + b"x" * 200_000 + b"\nok\n")
    lines = followed.read_new().lines
    assert lines[0] == "bad \ufffd byte"
    assert len(lines[1]) == 64 * 1024
    assert lines[2] == "ok"


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable, match="does not exist"):
        FollowedFile(tmp_path / "nope.log").read_new()
