"""systemd: recorded `systemctl show` output replayed by a stand-in systemctl (no systemd runs here)."""

from __future__ import annotations

import calendar
import shlex
from pathlib import Path

import pytest

from conftest import EngineFor
from opstui.config import load_config
from opstui.sources import build_sources
from opstui.sources.systemd import PROPERTIES, SystemdSource

RECORDINGS = Path(__file__).parent / "recordings" / "systemd"
UNITS = ["bot.service", "crm-sync", "nosuch.service"]


class FakeSystemctl:
    """An executable `systemctl` that prints a recording and notes each call's arguments."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "systemctl"
        self.current = directory / "current.txt"
        self.calls = directory / "calls.txt"
        self.status = directory / "status"
        self.status.write_text("0")
        self.path.write_text(
            "#!/bin/sh\n"
            f'echo "$@" >> {shlex.quote(str(self.calls))}\n'
            f"status=$(cat {shlex.quote(str(self.status))})\n"
            'if [ "$status" != 0 ]; then echo "Failed to connect to bus: Host is down" >&2; exit "$status"; fi\n'
            f"cat {shlex.quote(str(self.current))}\n"
        )
        self.path.chmod(0o755)

    def play(self, recording: str) -> None:
        self.current.write_text((RECORDINGS / recording).read_text())

    def argv(self) -> list[list[str]]:
        return [line.split() for line in self.calls.read_text().splitlines()]


@pytest.fixture
def systemctl(tmp_path: Path) -> FakeSystemctl:
    return FakeSystemctl(tmp_path)


async def test_units_are_read_with_one_systemctl_call_and_shown_as_systemd_says(
    systemctl: FakeSystemctl, engine_for: EngineFor
) -> None:
    source = SystemdSource(units=UNITS, interval=5, timeout=3, command=[str(systemctl.path)])
    engine = engine_for(source)
    systemctl.play("1-running.txt")
    snap = await engine.collect_once()
    procs = {p.name: p for p in snap.processes}
    bot = procs["bot.service"]
    assert (bot.status, bot.pid, bot.rss_bytes, bot.restarts_total) == ("online", 812, 48734208, 0)
    assert bot.started_at == calendar.timegm((2024, 5, 14, 10, 32, 1, 0, 0, 0))
    assert bot.manager == "systemd" and bot.key == "systemd:bot.service"
    assert bot.cpu_percent is None, "CPU needs two looks"
    assert procs["crm-sync"].restarts_total == 2, "the first look takes systemd's own NRestarts"
    assert procs["nosuch.service"].status == "missing"
    assert snap.sources["systemd"].ok
    assert snap.sources["systemd"].detail == "unit not found: nosuch.service"
    (call,) = systemctl.argv()
    assert call == ["show", "--property=" + ",".join(PROPERTIES), "--", *UNITS]


async def test_a_crash_loop_shows_and_restarts_keep_counting_after_a_manual_restart(
    systemctl: FakeSystemctl, engine_for: EngineFor
) -> None:
    source = SystemdSource(units=UNITS, interval=5, timeout=3, command=[str(systemctl.path)])
    engine = engine_for(source)
    seen = []
    for recording in ("1-running.txt", "2-auto-restart.txt", "3-restarted.txt", "4-manual-restart.txt"):
        systemctl.play(recording)
        seen.append({p.name: p for p in (await engine.collect_once()).processes})
    crm = [tick["crm-sync"] for tick in seen]
    assert crm[1].status == "crash-loop", "SubState auto-restart is systemd restarting a crashed service"
    assert crm[1].pid is None
    assert [p.restarts_total for p in crm] == [2, 3, 4, 5], "NRestarts went 2, 3, 4, then 0 on a manual restart"
    assert [p.restarts_last_hour for p in crm] == [0, 1, 2, 3]
    assert crm[3].status == "crash-loop", "three restarts within minutes: it stands out even while running"
    assert crm[3].pid == 1422
    assert crm[3].cpu_percent is None, "the cgroup's CPU time restarted from zero"
    bot = [tick["bot.service"] for tick in seen]
    assert all(p.status == "online" and p.restarts_total == 0 for p in bot)
    assert bot[1].cpu_percent is not None and bot[1].cpu_percent > 0
    assert len(systemctl.argv()) == 4, "one systemctl call per tick, whatever the number of units"


async def test_systemctl_failing_is_a_clear_error_and_the_source_recovers(
    systemctl: FakeSystemctl, engine_for: EngineFor
) -> None:
    source = SystemdSource(units=UNITS, interval=5, timeout=3, command=[str(systemctl.path)])
    engine = engine_for(source)
    systemctl.play("1-running.txt")
    await engine.collect_once()
    systemctl.status.write_text("1")
    snap = await engine.collect_once()
    status = snap.sources["systemd"]
    assert not status.ok
    assert status.error == "systemctl show failed (exit 1): Failed to connect to bus: Host is down"
    assert [p.pid for p in snap.processes if p.name == "bot.service"] == [812], "the last good value stays"
    systemctl.status.write_text("0")
    assert (await engine.collect_once()).sources["systemd"].ok


async def test_no_systemctl_at_all(tmp_path: Path, engine_for: EngineFor) -> None:
    source = SystemdSource(units=UNITS, interval=5, timeout=3, command=[str(tmp_path / "systemctl")])
    snap = await engine_for(source).collect_once()
    assert snap.sources["systemd"].error == (f"{tmp_path / 'systemctl'} not found on PATH: does this host run systemd?")


async def test_config_builds_a_systemd_source_that_finds_systemctl_on_path(
    systemctl: FakeSystemctl, write_config, monkeypatch: pytest.MonkeyPatch, engine_for: EngineFor
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PATH", f"{systemctl.path.parent}:{Path('/usr/bin')}:{Path('/bin')}")
    systemctl.play("1-running.txt")
    config = load_config(write_config('[[systemd]]\nunits = ["bot.service"]\nuser = true\ninterval = "10s"\n'))
    (source,) = [s for s in build_sources(config) if s.kind == "systemd"]
    assert source.interval == 10
    snap = await engine_for(source).collect_once()
    assert [p.status for p in snap.processes] == ["online"]
    assert systemctl.argv()[0][0] == "--user"
