"""Run the benchmarks and rewrite docs/performance.md: `uv run --group bench python -m bench` (about 9 minutes).

    uv run --group bench python -m bench               # everything; rewrites docs/performance.md
    uv run python -m bench --only tui,ticks           # some suites; the page keeps the others' stored results
    uv run python -m bench --quick                    # development: fewer calls, smaller worlds, page to a temp file
    uv run python -m bench --list                     # the suites, what each measures and how long it takes

Results are kept in bench/results.json, so a run of some suites re-renders the whole page. Quick runs are
never stored and never touch docs/performance.md unless --output says so.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import alerts, footprint, leak, page, pm2, processes, sources, telegram, ticks, tui
from bench._measure import Context, Result, SuiteRun, machine, now_iso

REPO = Path(__file__).resolve().parent.parent
PAGE = REPO / "docs" / "performance.md"
RESULTS = Path(__file__).resolve().parent / "results.json"

SUITES: dict[str, tuple[str, str]] = {
    "daemon": ("the daemon's CPU share and RSS at 2 s and 5 s, side by side with Glances", "4 min"),
    "tui": ("the TUI's CPU share and RSS at 1 s and 2 s (with `daemon`: in the same window)", "4 min"),
    "ticks": ("per-tick cost of a reference and a large deployment through the engine", "1 min"),
    "startup": ("time to the TUI's first frame vs a minimal Textual app", "40 s"),
    "telegram": ("PM2 crash to the Telegram request", "40 s"),
    "leak": ("memory over thousands of engine ticks", "1 min"),
    "pm2": ("PM2 over rpc.sock vs `pm2 jlist`; crash to pushed facts", "20 s"),
    "processes": ("systemd, Docker, plain processes, logs, backups, env: one tick each", "10 s"),
    "sources": ("Redis, PostgreSQL, dispatch logs, health, Prometheus: one tick each", "50 s"),
    "alerts": ("the alert rules per snapshot, display only and delivering", "10 s"),
}
"""Every suite, in the order they run and appear on the page, with what it measures and how long it takes."""


def command(suite: str | None = None) -> str:
    group = "--group bench " if suite in (None, "daemon") else ""
    only = f" --only {suite}" if suite else ""
    return f"uv run {group}python -m bench{only}"


def run_suite(name: str, ctx: Context, done: dict[str, SuiteRun]) -> None:
    """Run one suite (the footprint window serves `daemon` and `tui` at once) and put its runs into `done`."""
    if name in done:
        return
    started = time.perf_counter()
    runs: dict[str, SuiteRun]
    if name in ("daemon", "tui"):
        wanted = {"daemon", "tui"} & set(ctx.selected)
        runs = footprint.run(ctx, daemon="daemon" in wanted, tui="tui" in wanted)
    else:
        module = MODULES[name]
        call: Callable[[Context], Any] = module.run
        result = asyncio.run(call(ctx)) if inspect.iscoroutinefunction(call) else call(ctx)
        runs = {name: result}
    seconds = time.perf_counter() - started
    for suite, run in runs.items():
        run.seconds = seconds
        run.measured_at = now_iso()
        run.machine = machine()
        run.facts["quick"] = ctx.quick
        done[suite] = run


MODULES: dict[str, Any] = {
    "ticks": ticks,
    "startup": tui,
    "telegram": telegram,
    "leak": leak,
    "pm2": pm2,
    "processes": processes,
    "sources": sources,
    "alerts": alerts,
}


def load(path: Path) -> dict[str, SuiteRun]:
    if not path.exists():
        return {}
    stored = json.loads(path.read_text())
    return {
        name: SuiteRun(**{**run, "results": [Result(**row) for row in run["results"]]})
        for name, run in stored.items()
        if name in SUITES
    }


def save(path: Path, runs: dict[str, SuiteRun]) -> None:
    ordered = {name: asdict(runs[name]) for name in SUITES if name in runs}
    path.write_text(json.dumps(ordered, indent=1, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", metavar="SUITE[,SUITE]", help="run these suites only (see --list)")
    parser.add_argument("--quick", action="store_true", help="fewer calls and smaller worlds, for development")
    parser.add_argument("--output", type=Path, help="where to write the page (default: docs/performance.md)")
    parser.add_argument("--results", type=Path, help="where results are kept (default: bench/results.json)")
    parser.add_argument("--list", action="store_true", help="list the suites and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, (what, takes) in SUITES.items():
            print(f"{name:<10} {what} (about {takes})")
        return 0
    selected = list(SUITES) if not args.only else [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in selected if s not in SUITES]
    if unknown:
        parser.error(f"unknown suite {', '.join(unknown)}; the suites are {', '.join(SUITES)}")
    results_path = args.results or (None if args.quick else RESULTS)
    output = args.output or (Path(tempfile.gettempdir()) / "opstui-bench-quick.md" if args.quick else PAGE)
    stored = load(results_path) if results_path else {}
    root = Path(tempfile.mkdtemp(prefix="opstui-bench-"))
    root.chmod(0o711)  # PostgreSQL runs as its own user when we are root and must reach its directory
    ctx = Context(quick=args.quick, root=root, selected=tuple(selected))
    done: dict[str, SuiteRun] = {}
    started = time.perf_counter()
    try:
        for name in SUITES:
            if name in selected:
                ctx.say(f"{name}: {SUITES[name][0]}")
                run_suite(name, ctx, done)
                if results_path:
                    save(results_path, {**stored, **done})
    finally:
        shutil.rmtree(root, ignore_errors=True)
    total = time.perf_counter() - started
    runs = {**stored, **done}
    output.write_text(page.render(runs, total=total if set(selected) == set(SUITES) else None, command=command))
    ctx.say(f"done in {total:.0f} s; wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
