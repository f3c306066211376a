"""How the dashboard looks, pinned: every shipped theme at 80x24 and 160x48 on the sample world.

The feed, the clock, the host, the daemon and the themes are all fixed (tests/tui_sample.py), so a change
in these pictures is a change in the product. Re-baseline on purpose with `pytest --snapshot-update`
and look at the pictures (snapshot_report.html) before committing them.
"""

from __future__ import annotations

import pytest

from tui_sample import sample_app

THEMES = ["opstui-dark", "opstui-light", "opstui-high-contrast", "opstui-ansi"]


@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_dashboard(snap_compare, theme: str, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(sample_app(theme=theme), terminal_size=size)


def test_queues_tab_with_a_failing_source_at_80x24(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(sample_app(), press=["2"], terminal_size=(80, 24))


def test_help_screen_at_80x24(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(sample_app(), press=["question_mark"], terminal_size=(80, 24))


def test_actions_pane_without_actions_at_80x24(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(sample_app(), press=["9"], terminal_size=(80, 24))
