"""The benchmark harness runs, stores what it measured and writes the page; what it measures is not judged here
(speed targets live in docs/performance.md, never in tests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_quick_run_of_some_suites_writes_the_page_and_keeps_the_results(tmp_path: Path) -> None:
    page, results = tmp_path / "performance.md", tmp_path / "results.json"
    ran = bench("--quick", "--only", "alerts,processes", "--output", str(page), "--results", str(results))
    assert ran.returncode == 0, ran.stderr
    text = page.read_text()
    assert text.startswith("# Performance")
    summary = text.split("## Summary: targets and what was measured", 1)[1].split("\n## ", 1)[0]
    assert "| target | limit | measured | met | reproduce |" in summary
    assert "`uv run python -m bench --only ticks`" in summary  # not run: says how to measure it
    assert summary.count("not measured") >= 8
    alerting = text.split("## Alerting: the cost of judging a snapshot", 1)[1]
    assert "| display only (what the TUI runs) |" in alerting
    assert "Reproduce: `uv run python -m bench --only alerts`" in alerting
    assert "quick mode" in alerting
    stored = json.loads(results.read_text())
    assert sorted(stored) == ["alerts", "processes"]
    assert {row["id"] for row in stored["alerts"]["results"]} == {"display", "deliver", "shared"}
    assert stored["alerts"]["machine"]["cores"]

    # Another suite later: the page keeps what was stored and adds the new one.
    again = bench("--quick", "--only", "alerts", "--output", str(page), "--results", str(results))
    assert again.returncode == 0, again.stderr
    assert "| env, 50-line .env |" in page.read_text()


def test_an_unknown_suite_is_named_with_the_ones_there_are() -> None:
    ran = bench("--only", "tui,nosuch")
    assert ran.returncode == 2
    assert "unknown suite nosuch" in ran.stderr and "ticks" in ran.stderr
