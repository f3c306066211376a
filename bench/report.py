"""Writing docs/performance.md from stored results: number formats, markdown tables, the machine line."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from bench._measure import Result, SuiteRun, Value

Column = tuple[str, Callable[[Result], str], bool]
"""A table column: its header, how a row's cell is written, and whether it is a number (right-aligned)."""


def ms(value: Value, digits: int = 2) -> str:
    return "n/a" if not isinstance(value, int | float) else f"{value:,.{digits}f}"


def pct(value: Value, digits: int = 2) -> str:
    return "n/a" if not isinstance(value, int | float) else f"{value:.{digits}f} %"


def mib(value: Value) -> str:
    return "n/a" if not isinstance(value, int | float) else f"{value:.0f} MiB"


def seconds(value: Value, digits: int = 2) -> str:
    return "n/a" if not isinstance(value, int | float) else f"{value:.{digits}f} s"


def times(value: Value) -> str:
    """A ratio as people say it: 52x, 1.9x, 0.8x."""
    if not isinstance(value, int | float):
        return "n/a"
    return f"{value:.0f}x" if value >= 10 else f"{value:.1f}x"


def cell(name: str, fmt: Callable[[Value], str] = ms) -> Callable[[Result], str]:
    return lambda row: fmt(row.values.get(name))


WHAT: Column = ("what", lambda row: row.what, False)
NOTE: Column = ("note", lambda row: row.note, False)
TIMING: list[Column] = [
    ("wall p50 ms", cell("wall_p50_ms"), True),
    ("wall p95 ms", cell("wall_p95_ms"), True),
    ("CPU p50 ms", cell("cpu_p50_ms"), True),
    ("CPU p95 ms", cell("cpu_p95_ms"), True),
]
"""The columns of a per-call timing (see `Timing.values`)."""


def table(columns: Sequence[Column], rows: Sequence[Result]) -> str:
    lines = [
        "| " + " | ".join(title for title, _, _ in columns) + " |",
        "|" + "|".join("---:" if number else "---" for _, _, number in columns) + "|",
    ]
    lines += ["| " + " | ".join(write(row) for _, write, _ in columns) + " |" for row in rows]
    return "\n".join(lines)


def machine_line(machine: dict[str, Any]) -> str:
    return (
        f"{machine.get('cpu')}, {machine.get('cores')} cores, {machine.get('ram_gib')} GiB RAM, "
        f"{machine.get('kernel')}, Python {machine.get('python')}, Textual {machine.get('textual')}"
    )


def measured_line(run: SuiteRun, command: str) -> str:
    """Where a section's numbers come from: the command that reproduces every row, and when it ran."""
    quick = " (quick mode: fewer calls, smaller worlds; not for comparison)" if run.facts.get("quick") else ""
    load = run.machine.get("load_at_start")
    return (
        f"Reproduce: `{command}` (took {run.seconds:.0f} s; measured {run.measured_at}, load average {load} on "
        f"{run.machine.get('cores')} cores at the start{quick})."
    )
