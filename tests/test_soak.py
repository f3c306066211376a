"""The soak's short version (bench/soak.py): two simulated hours of ticks with every kind of fault, at half scale.

It asserts behaviour only: no part crashed inside, every message Telegram received is recorded in the outbox
exactly once, nothing is left waiting. Memory and time are the benchmark's (docs/performance.md).
"""

from __future__ import annotations

from bench.soak import soak


def test_two_simulated_hours_of_faults_crash_nothing_and_lose_or_repeat_no_notification() -> None:
    result = soak(hours=2, step=20, scale=0.5)
    assert result.ticks == 360
    assert len(result.faults) == 11, result.faults  # every kind of fault, at least once
    assert result.tracebacks == 0
    assert result.fired > 5 and result.resolved > 5
    assert result.messages == result.recorded > 5
    assert (result.duplicated, result.lost, result.waiting, result.failed) == (0, 0, 0, 0)
