"""The Textual face of opstui; the only package that imports Textual."""

from __future__ import annotations

from pathlib import Path

from opstui.config import Config


def run_tui(config: Config, *, theme: str | None = None, demo: Path | None = None) -> int:
    from opstui.tui.app import OpsApp

    app = OpsApp(config, theme_name=theme, demo=demo)
    app.run()
    return app.return_code or 0
