"""Error-log tails: the latest error lines of a file, as a person should see them: clean, redacted, current."""

from __future__ import annotations

import os
from pathlib import Path

from conftest import EngineFor
from opstui.config import load_config
from opstui.model import LogTail
from opstui.redact import register_secret
from opstui.sources import build_sources
from opstui.sources.logs import LogSource


def append(path: Path, text: str) -> None:
    with path.open("a") as handle:
        handle.write(text)


async def tail_of(engine, name: str = "worker") -> LogTail:  # type: ignore[no-untyped-def]
    snap = await engine.collect_once()
    (tail,) = [t for t in snap.logs if t.name == name]
    return tail


async def test_the_last_lines_then_only_what_was_appended(tmp_path: Path, engine_for: EngineFor) -> None:
    log = tmp_path / "worker-error.log"
    log.write_text("".join(f"old error {n}\n" for n in range(50)))
    engine = engine_for(LogSource("worker", path=log, lines=3, interval=2, timeout=2))
    tail = await tail_of(engine)
    assert tail.lines == ("old error 47", "old error 48", "old error 49")
    assert (tail.key, tail.source, tail.path) == ("log:worker", "log worker", str(log))
    append(log, "new error 1\n\nnew error 2\n")
    assert (await tail_of(engine)).lines == ("old error 49", "new error 1", "new error 2")
    os.rename(log, tmp_path / "worker-error.log.1")
    log.write_text("after rotation\n")
    assert (await tail_of(engine)).lines[-1] == "after rotation"


async def test_lines_are_shown_without_terminal_codes_and_with_secrets_masked(
    tmp_path: Path, engine_for: EngineFor
) -> None:
    register_secret("hunter2-known-secret")
    log = tmp_path / "bot-error.log"
    log.write_text("")
    engine = engine_for(LogSource("bot", path=log, lines=10, interval=2, timeout=2))
    await tail_of(engine, "bot")
    append(
        log,
        "\x1b[31mERROR\x1b[0m failed\tto connect\x07\x00 with password=swordfish\n"
        "retrying with hunter2-known-secret via redis://app:pw-in-url@10.0.0.5:6379\n" + "x" * 5000 + "\n",
    )
    lines = (await tail_of(engine, "bot")).lines
    assert lines[0] == "ERROR failed    to connect with password=***"
    assert lines[1] == "retrying with *** via redis://app:***@10.0.0.5:6379"
    assert len(lines[2]) == 1000


async def test_a_filter_keeps_only_error_lines_even_from_far_back(tmp_path: Path, engine_for: EngineFor) -> None:
    log = tmp_path / "app.log"
    log.write_text("ERROR early\n" + "".join(f"INFO ok {n}\n" for n in range(150)))
    engine = engine_for(LogSource("app", path=log, lines=5, match="ERROR|FATAL", interval=2, timeout=2))
    assert (await tail_of(engine, "app")).lines == ("ERROR early",)
    append(log, "INFO fine\nFATAL out of memory\n")
    assert (await tail_of(engine, "app")).lines == ("ERROR early", "FATAL out of memory")


async def test_a_log_that_does_not_exist_yet_is_not_a_failure(tmp_path: Path, engine_for: EngineFor) -> None:
    log = tmp_path / "batch-error.log"
    engine = engine_for(LogSource("batch", path=log, lines=5, interval=2, timeout=2))
    snap = await engine.collect_once()
    assert snap.sources["log batch"].ok
    assert snap.sources["log batch"].detail == f"{log} does not exist yet"
    assert snap.logs[0].lines == ()
    log.write_text("first error\n")
    assert (await tail_of(engine, "batch")).lines == ("first error",)
    assert engine.snapshot.sources["log batch"].detail is None


async def test_a_path_that_is_not_a_file_is_a_clear_error(tmp_path: Path, engine_for: EngineFor) -> None:
    snap = await engine_for(LogSource("dir", path=tmp_path, lines=5, interval=2, timeout=2)).collect_once()
    assert snap.sources["log dir"].error == f"{tmp_path} is not a file"


async def test_config_builds_one_source_per_log(tmp_path: Path, write_config, engine_for: EngineFor) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "a.log").write_text("boom\n")
    config = load_config(
        write_config(
            f'[[logs]]\nname = "a"\npath = "{tmp_path / "a.log"}"\n'
            f'[[logs]]\nname = "b"\npath = "{tmp_path / "b.log"}"\nlines = 5\nmatch = "ERR"\n'
        )
    )
    sources = [s for s in build_sources(config) if s.kind == "logs"]
    assert [s.name for s in sources] == ["log a", "log b"]
    snap = await engine_for(*sources).collect_once()
    assert [(t.name, t.lines) for t in snap.logs] == [("a", ("boom",)), ("b", ())]
