"""docs/performance.md: the targets against what was measured, then every suite's details, from stored results."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import alerts, footprint, leak, pm2, processes, sources, telegram, ticks, tui
from bench._measure import SuiteRun
from bench.report import machine_line, measured_line, times

Runs = dict[str, SuiteRun]
MB_PER_MIB = 2**20 / 1e6


@dataclass(frozen=True)
class Target:
    what: str
    limit: str
    suite: str
    measure: Callable[[Runs], tuple[str, bool] | None]
    """The measured figure as written in the summary, and whether it meets the limit; None when not measured."""
    why: Callable[[Runs], str] | None = None
    """Why it is missed, when it is (written from the profiles; shown under the summary only then)."""


def _value(runs: Runs, suite: str, id: str, name: str) -> float | None:
    run = runs.get(suite)
    value = run.value(id, name) if run else None
    return float(value) if isinstance(value, int | float) else None


def _vs_glances(interval: int, id: str) -> Callable[[Runs], tuple[str, bool] | None]:
    def measure(runs: Runs) -> tuple[str, bool] | None:
        ours = _value(runs, "daemon", id, "cpu_percent")
        theirs = _value(runs, "daemon", f"glances-{interval}s", "cpu_percent")
        if ours is None or theirs is None:
            return None
        share = ours / theirs
        return f"{ours:.2f} % vs {theirs:.2f} % of a core: {share:.2f} of Glances'", share <= 0.25

    return measure


def _rss(suite: str, ids: tuple[str, ...], limit_mb: float) -> Callable[[Runs], tuple[str, bool] | None]:
    def measure(runs: Runs) -> tuple[str, bool] | None:
        peaks = [(_value(runs, suite, id, "rss_peak_mib"), id) for id in ids]
        found = [(mib, id) for mib, id in peaks if mib is not None]
        if not found:
            return None
        mib, id = max(found)
        mb = mib * MB_PER_MIB
        return f"{mb:.0f} MB ({mib:.0f} MiB) peak, `{id}`", mb < limit_mb

    return measure


def _tick(id: str, limit_ms: float) -> Callable[[Runs], tuple[str, bool] | None]:
    def measure(runs: Runs) -> tuple[str, bool] | None:
        p95 = _value(runs, "ticks", id, "wall_p95_ms")
        if p95 is None:
            return None
        p50, cpu = _value(runs, "ticks", id, "wall_p50_ms"), _value(runs, "ticks", id, "cpu_p95_ms")
        return f"{p95:.1f} ms p95 (p50 {p50:.1f} ms; CPU p95 {cpu:.1f} ms)", p95 < limit_ms

    return measure


def _round_trip(runs: Runs) -> tuple[str, bool] | None:
    p50 = _value(runs, "sources", "redis-1000", "wall_p50_ms")
    if p50 is None:
        return None
    p95, cpu = _value(runs, "sources", "redis-1000", "wall_p95_ms"), _value(runs, "sources", "redis-1000", "cpu_p50_ms")
    return f"{p50:.1f} ms p50 (p95 {p95:.1f} ms; CPU p50 {cpu:.1f} ms)", p50 < 20


def _load(runs: Runs, suite: str) -> str:
    run = runs.get(suite)
    return f"load average {run.machine.get('load_at_start')} on {run.machine.get('cores')} cores" if run else ""


def _why_host_only(runs: Runs) -> str:
    floor = _value(runs, "daemon", "daemon-host-notop-2s", "cpu_percent")
    glances = _value(runs, "daemon", "glances-2s", "cpu_percent")
    if floor is None or not glances:
        return ""
    return (
        f"Without the list of the biggest processes the same daemon uses {floor:.2f} % ({floor / glances:.2f} of "
        "Glances'), and a daemon with no source at all about 0.13 % (measured from /proc over a minute): the floor "
        "is a Python process with an event loop, APScheduler's timers, and its presence and delivery claims in "
        "SQLite every few seconds. Glances with `--stdout` and three plugins is itself cheap (no screen), so a "
        "quarter of it is below that floor; the process list (one read of `/proc/<pid>/stat` per process each "
        "refresh, a third of psutil's cost) is what a daemon could still skip while memory is fine."
    )


def _why_world(runs: Runs) -> str:
    return (
        "Against the demo world the daemon reads eight sources to Glances' one host: each round three processes, "
        "two logs, Redis, PostgreSQL (six queries), a dispatch log and a health endpoint, then the alert rules and "
        "their state in SQLite. The like-for-like comparison is the host-only row; the demo world costs what its "
        "reads cost (see where a tick's time goes, below)."
    )


def _why_tick(runs: Runs) -> str:
    return (
        f"Measured with {_load(runs, 'ticks')}, other work sharing the machine: the sources run at once in one "
        "process and each waits for its server, so the wall time is the tick's CPU stretched by the share of a "
        "core the machine leaves it, plus the servers' answers. The CPU goes mostly to the alert rules over every "
        "item and to the history of every figure, both once per round."
    )


def _why_round_trip(runs: Runs) -> str:
    return (
        f"Measured with {_load(runs, 'sources')}: the CPU is ours; the rest of the wall time is Redis answering "
        "5,376 commands, which a busy machine slows down."
    )


def _why_first_frame(runs: Runs) -> str:
    return (
        "The config is validated before anything is drawn, so that a wrong one names the file, key and problem and "
        "starts nothing: importing pydantic and building the config's models takes ~0.13 s here, more than half "
        "of a minimal Textual app's whole start; the dashboard's first frame then lays out eight panes and their "
        "tables. The client libraries (redis-py, asyncpg, httpx) and the package metadata are no longer loaded "
        "before it (see the fixes below)."
    )


def _pm2_ratio(runs: Runs) -> tuple[str, bool] | None:
    ratio = runs["pm2"].facts.get("cpu_ratio") if "pm2" in runs else None
    if not isinstance(ratio, int | float):
        return None
    return f"{times(ratio)} less CPU per read", ratio >= 30


def _first_frame(runs: Runs) -> tuple[str, bool] | None:
    ratio = _value(runs, "startup", "demo", "vs_minimal")
    if ratio is None:
        return None
    ours, minimal = _value(runs, "startup", "demo", "median_s"), _value(runs, "startup", "minimal", "median_s")
    return f"{ratio:.2f}x ({ours:.2f} s vs {minimal:.2f} s)", ratio <= 1.3


def _telegram(runs: Runs) -> tuple[str, bool] | None:
    worst = _value(runs, "telegram", "crash", "max_ms")
    if worst is None:
        return None
    median = _value(runs, "telegram", "crash", "median_ms")
    return f"{median:.0f} ms median, {worst:.0f} ms worst", worst < 2000


TARGETS = [
    Target(
        "daemon CPU, the host only (Glances' job), every 2 s",
        "at most 1/4 of Glances' at 2 s",
        "daemon",
        _vs_glances(2, "daemon-host-2s"),
        _why_host_only,
    ),
    Target(
        "daemon CPU, the host only (Glances' job), every 5 s",
        "at most 1/4 of Glances' at 5 s",
        "daemon",
        _vs_glances(5, "daemon-host-5s"),
        _why_host_only,
    ),
    Target(
        "daemon CPU, the demo world (8 sources), every 2 s",
        "at most 1/4 of Glances' at 2 s",
        "daemon",
        _vs_glances(2, "daemon-2s"),
        _why_world,
    ),
    Target(
        "daemon CPU, the demo world (8 sources), every 5 s",
        "at most 1/4 of Glances' at 5 s",
        "daemon",
        _vs_glances(5, "daemon-5s"),
        _why_world,
    ),
    Target("daemon memory (demo world)", "RSS under 80 MB", "daemon", _rss("daemon", ("daemon-2s", "daemon-5s"), 80)),
    Target("TUI memory", "RSS under 120 MB", "tui", _rss("tui", ("tui-1s", "tui-2s"), 120)),
    Target("reference deployment, one tick", "p95 under 30 ms", "ticks", _tick("reference", 30), _why_tick),
    Target("large deployment, one tick", "p95 under 150 ms", "ticks", _tick("large", 150), _why_tick),
    Target("1,000 Redis queues in one round trip", "under 20 ms", "sources", _round_trip, _why_round_trip),
    Target("PM2 over its socket vs `pm2 jlist`", "at least 30x cheaper", "pm2", _pm2_ratio),
    Target(
        "first full frame of the TUI (demo config)",
        "within 1.3x of a minimal Textual app",
        "startup",
        _first_frame,
        _why_first_frame,
    ),
    Target("PM2 crash to the Telegram request", "under 2 s", "telegram", _telegram),
]


def summary(runs: Runs, command: Callable[[str | None], str]) -> str:
    lines = ["| target | limit | measured | met | reproduce |", "|---|---|---|---|---|"]
    for target in TARGETS:
        found = target.measure(runs)
        measured, met = found if found else ("not measured", None)
        verdict = "n/a" if met is None else ("yes" if met else "**no**")
        lines.append(f"| {target.what} | {target.limit} | {measured} | {verdict} | `{command(target.suite)}` |")
    return "\n".join(lines)


def misses(runs: Runs) -> str:
    """Each missed target: by how much, and why."""
    lines = []
    for target in TARGETS:
        found = target.measure(runs)
        if found is not None and not found[1]:
            why = f" {target.why(runs)}" if target.why else ""
            lines.append(f"- **{target.what}**: {found[0]} against a limit of {target.limit.lower()}.{why}")
    if not lines:
        return "Every measured target is met."
    return "Missed:\n\n" + "\n".join(lines)


def _section(runs: Runs, suite: str, command: Callable[[str | None], str], body: Callable[[SuiteRun], str]) -> str:
    run = runs.get(suite)
    if run is None:
        return f"Not measured yet: `{command(suite)}`."
    return f"{body(run)}\n\n{measured_line(run, command(suite))}"


def render(runs: Runs, *, total: float | None, command: Callable[[str | None], str]) -> str:
    latest = max(runs.values(), key=lambda r: r.measured_at, default=None)
    where = machine_line(latest.machine) if latest else "no results yet"
    when = latest.measured_at if latest else "never"
    took = f" The whole run took {total / 60:.1f} minutes." if total else ""
    daemon, tui_run = runs.get("daemon"), runs.get("tui")
    footprint_part = footprint.section(daemon, tui_run) if daemon or tui_run else "Not measured yet."
    footprint_measured = "\n\n".join(
        measured_line(run, command(run.suite)) for run in (daemon, tui_run) if run is not None
    )
    s = {name: (lambda body, name=name: _section(runs, name, command, body)) for name in runs}

    def section(name: str, body: Callable[[SuiteRun], str]) -> str:
        return s[name](body) if name in s else f"Not measured yet: `{command(name)}`."

    return f"""\
# Performance

What opstui costs on the machine it watches, measured by `bench/` against real parts (PM2, Redis, PostgreSQL,
HTTP servers, a pseudo-terminal) and side by side with the tools people use instead. Every number on this
page comes from one harness and can be reproduced with the command beside it; targets live here and in the
benchmarks, never as timed assertions in the tests.

```sh
{command(None)}            # everything (about 9 minutes); rewrites this page
uv run python -m bench --only tui,ticks     # some suites; the rest of the page keeps its stored results
uv run python -m bench --quick              # development: fewer calls, smaller worlds; page to a temp file
```

Machine: {where}. Measured {when}.{took} Other work may run on the machine at the same time; figures are
medians and 95th percentiles, and a window of minutes for the running costs.

## Summary: targets and what was measured

{summary(runs, command)}

{misses(runs)}

## While it runs: the daemon and the TUI, side by side with Glances

All of these run at once, in one window, on the same host: Glances at 2 s and 5 s; two daemons that watch
only what Glances watches (the host's memory, swap, load and biggest processes), every 2 s and every 5 s;
and, against the demo world (`opstui demo`'s real Redis, PostgreSQL, crash-looping backend, dispatch log and
/health), two daemons every 2 s and 5 s and two dashboards in real pseudo-terminals at 160x48 with refresh
and sources every 1 s and every 2 s. Against the demo world opstui watches the host, three processes and
their logs, two error logs, a Redis queue and its activity keys, a PostgreSQL lock and retry table, the
dispatch log and the health endpoint, and the daemons send their alerts to a local stand-in for the
Telegram Bot API. Glances runs its default plugins (`--stdout` prints three of them). CPU is each process's
own user + system time over the window; the demo world's servers are not counted.

{footprint_part}

{footprint_measured}

The difference between a dashboard and a daemon at the same interval is what the screen costs. Glances'
figures are for the same refresh on the same host, in the same minutes.

## Per tick: a reference and a large deployment

{section("ticks", ticks.section)}

## Start-up: the first frame

{section("startup", tui.section)}

The sources start after the first frame is drawn, so reading them never delays it.

## From a PM2 crash to Telegram

{section("telegram", telegram.section)}

## Memory over a long run

{section("leak", leak.section)}

## Sources: processes

### PM2: rpc.sock vs `pm2 jlist`

{section("pm2", pm2.section)}

### systemd, Docker, plain processes, logs, checks: one tick each

{section("processes", processes.section)}

## Sources: data

{section("sources", sources.section)}

## Alerting: the cost of judging a snapshot

{section("alerts", alerts.section)}

{SOAK.read_text().rstrip()}

{FIXES.read_text().rstrip()}
"""


SOAK = Path(__file__).with_name("soak.md")
"""Hand-written from `python -m bench.soak`'s output: it simulates a day, longer than the harness's budget."""
FIXES = Path(__file__).with_name("fixes.md")
"""Hand-written: what keeps the TUI cheap, and each fix with its before and after."""
