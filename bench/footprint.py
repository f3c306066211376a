"""What opstui costs while it runs: the daemon's CPU share and memory at 2 s and 5 s, the TUI's at 1 s and 2 s, and
Glances' at the daemon's refreshes, all side by side in one window against the demo world.

Every program is a separate process started the way a user starts it (`opstui daemon`, `opstui` in a real
pseudo-terminal, `glances --stdout`), each with its own state directory; their CPU is psutil's user + system
time over the same window, after a warm-up. The demo world's Redis, PostgreSQL and simulated backend are
other processes and are not counted.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.telegram_api import ALERTS_CHAT, TOKEN, FakeBotAPI

from bench._measure import Context, Footprint, Result, SuiteRun, Value
from bench.report import Column, cell, mib, pct, table
from bench.tui import SIZE, Terminal, environment, read_all
from opstui.demo import DemoWorld

GLANCES_PLUGINS = "mem,load,processcount"
"""What `glances --stdout` prints; it collects every enabled plugin each refresh whatever it prints."""


@dataclass
class Program:
    id: str
    what: str
    pid: int
    stop: object


def config_for(world: DemoWorld, *, interval: int, state: Path, extra: str = "") -> Path:
    """The demo's config with every source read each `interval` seconds and a state directory of its own."""
    text = re.sub(r'interval = "\d+s"', f'interval = "{interval}s"', world.config_text())
    text = re.sub(r'(?m)^state_dir = ".*"$', f'state_dir = "{state}"', text)
    path = state.parent / f"{state.name}.toml"
    path.write_text(text + extra)
    return path


def glances() -> str | None:
    """The glances executable of this environment (`uv run --group bench` installs it), else one on PATH."""
    beside = Path(sys.executable).parent / "glances"
    return str(beside) if beside.exists() else shutil.which("glances")


def run(ctx: Context, *, daemon: bool, tui: bool) -> dict[str, SuiteRun]:
    """Measure the selected programs in one window; returns a SuiteRun for "daemon" and/or "tui"."""
    warmup, window = (8.0, 20.0) if ctx.quick else (25.0, 150.0)
    root = ctx.root / "footprint"
    root.mkdir()
    home = root / "home"
    home.mkdir()
    glances_path = glances() if daemon else None
    programs: list[Program] = []
    terminals: list[Terminal] = []
    with FakeBotAPI() as api, DemoWorld() as world:
        try:
            telegram = f'\n[telegram]\ntoken = "{TOKEN}"\nchat_id = {ALERTS_CHAT}\napi_base = "{api.url}"\n'
            if daemon:
                # What Glances watches, and nothing else: the like-for-like comparison; and the same without the
                # biggest processes, the floor of a daemon that reads the host every 2 s.
                hosts = (("daemon-host-2s", 2, 8), ("daemon-host-5s", 5, 8), ("daemon-host-notop-2s", 2, 0))
                for id, interval, top in hosts:
                    path = root / f"{id}.toml"
                    path.write_text(
                        f'[general]\nstate_dir = "{root / id}"\n\n[host]\ninterval = "{interval}s"\n'
                        f"top_processes = {top}\n"
                    )
                    what = f"`opstui daemon`, the host only, every {interval} s" + ("" if top else ", no process list")
                    programs.append(daemon_program(id, path, root, what))
                for interval in (2, 5):
                    path = config_for(world, interval=interval, state=root / f"daemon-{interval}s", extra=telegram)
                    what = f"`opstui daemon`, the demo world, every {interval} s"
                    programs.append(daemon_program(f"daemon-{interval}s", path, root, what))
                for interval in (2, 5) if glances_path else ():
                    argv = [glances_path, "--stdout", GLANCES_PLUGINS, "-t", str(interval), "--disable-check-update"]
                    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=None)
                    what = f"`glances --stdout {GLANCES_PLUGINS} -t {interval}`"
                    programs.append(Program(f"glances-{interval}s", what, proc.pid, proc))
            if tui:
                for interval in (1, 2):
                    path = config_for(
                        world,
                        interval=interval,
                        state=root / f"tui-{interval}s",
                        extra=f'\n[tui]\nrefresh = "{interval}s"\n',
                    )
                    term = Terminal(
                        [sys.executable, "-m", "opstui", "-c", str(path)], size=SIZE, env=environment(home), cwd=home
                    )
                    terminals.append(term)
                    what = f"`opstui` at {SIZE[0]}x{SIZE[1]}, refresh and sources every {interval} s"
                    programs.append(Program(f"tui-{interval}s", what, term.pid, term))
            ctx.say(f"footprint: {len(programs)} programs, {warmup:.0f} s warm-up, {window:.0f} s window")
            wait(terminals, warmup)
            watches = {p.id: Footprint(p.pid) for p in programs}
            for watch in watches.values():
                watch.start()
            end = time.perf_counter() + window
            while time.perf_counter() < end:
                wait(terminals, min(5.0, end - time.perf_counter()))
                for watch in watches.values():
                    watch.sample()
            figures = {id: watch.stop() for id, watch in watches.items()}
            sent = len(api.messages)
        finally:
            for program in programs:
                stop(program.stop)
    return results(programs, figures, sent=sent, glances=glances_path, daemon=daemon, tui=tui)


def daemon_program(id: str, config: Path, root: Path, what: str) -> Program:
    with (root / f"{id}.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "opstui", "daemon", "-c", str(config), "--log-format", "text"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return Program(id, what, proc.pid, proc)


def wait(terminals: list[Terminal], seconds: float) -> None:
    if terminals:
        read_all(terminals, seconds)
    else:
        time.sleep(seconds)


def stop(handle: object) -> None:
    if isinstance(handle, Terminal):
        handle.stop()
    elif isinstance(handle, subprocess.Popen):
        handle.terminate()
        try:
            handle.wait(10)
        except subprocess.TimeoutExpired:
            handle.kill()
            handle.wait()


def results(
    programs: list[Program],
    figures: dict[str, dict[str, Value]],
    *,
    sent: int,
    glances: str | None,
    daemon: bool,
    tui: bool,
) -> dict[str, SuiteRun]:
    rows = {p.id: Result(p.id, p.what, figures[p.id]) for p in programs}
    runs: dict[str, SuiteRun] = {}
    if daemon:
        facts: dict[str, Value] = {"telegram_messages": sent, "glances": bool(glances)}
        for interval in (2, 5):
            theirs = rows.get(f"glances-{interval}s")
            for id in (f"daemon-{interval}s", f"daemon-host-{interval}s"):
                ours = rows.get(id)
                if ours and theirs:
                    share = float(ours.values["cpu_percent"] or 0) / float(theirs.values["cpu_percent"] or 1)
                    facts[f"{id}_vs_glances"] = share
        if not glances:
            facts["glances_missing"] = "glances is not installed: run the benchmark with `uv run --group bench`"
        runs["daemon"] = SuiteRun("daemon", [r for id, r in rows.items() if not id.startswith("tui")], facts)
    if tui:
        runs["tui"] = SuiteRun("tui", [r for id, r in rows.items() if id.startswith("tui")], {})
    return runs


COLUMNS: list[Column] = [
    ("what", lambda row: row.what, False),
    ("CPU (one core = 100 %)", cell("cpu_percent", pct), True),
    ("CPU seconds", lambda r: f"{r.values['cpu_seconds']:.2f} in {r.values['window_seconds']:.0f} s", True),
    ("RSS at the end", cell("rss_mib", mib), True),
    ("RSS peak", cell("rss_peak_mib", mib), True),
    ("USS", cell("uss_mib", mib), True),
]


def section(daemon: SuiteRun | None, tui: SuiteRun | None) -> str:
    rows = [*(daemon.results if daemon else []), *(tui.results if tui else [])]
    parts = [table(COLUMNS, rows)]
    if daemon is not None and "glances_missing" in daemon.facts:
        parts.append(f"Glances was not measured: {daemon.facts['glances_missing']}.")
    return "\n\n".join(parts)
