"""The Textual face of opstui; the only package that imports Textual."""

from __future__ import annotations

import sys
from pathlib import Path

from opstui.config import Config
from opstui.errors import OpsError


def run_tui(config: Config, *, theme: str | None = None, demo: Path | None = None) -> int:
    """Run the dashboard until the user quits or the terminal goes away; returns the exit status.

    Textual reads keys from stdin and draws on stderr: without a terminal on both it would spin at full
    CPU forever, so it refuses to start instead (after the config's `tui.keys` were checked, so that a
    mistake there is reported first).
    """
    from opstui.tui.app import OpsApp

    app = OpsApp(config, theme=theme, demo=demo)
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        raise OpsError("the dashboard needs an interactive terminal; for scripts use `opstui check`")
    app.run()
    return app.return_code or 0
