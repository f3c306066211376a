"""The Textual face of opstui; the only package that imports Textual."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from opstui.config import Config
from opstui.engine import Engine, build_engine
from opstui.errors import OpsError


class AlertingEngine:
    """The dashboard's feed: the engine with the alert rules on it, so the Alerts pane and the colours agree
    with `opstui check` and the daemon. While no daemon runs on this host, the TUI also delivers the
    notifications (the alerts runtime steps back as soon as a daemon appears)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.engine: Engine = build_engine(config)
        self.runtime: Any = None
        self.store: Any = None

    @property
    def snapshot(self) -> Any:
        return self.engine.snapshot

    def subscribe(self, callback: Any) -> Any:
        return self.engine.subscribe(callback)

    async def start(self) -> None:
        from opstui.alerts import start_alerting
        from opstui.state_postgres import alerting_store

        await self.engine.start()
        # With [daemon.ha], the daemons' shared database: their alert state, silences and delivery status.
        self.store = await asyncio.to_thread(alerting_store, self.config)
        self.runtime = await start_alerting(self.engine, self.config, self.store, role="tui")

    async def stop(self) -> None:
        if self.runtime is not None:
            await self.runtime.stop()
        await self.engine.stop()
        if self.store is not None:
            self.store.close()


def run_tui(config: Config, *, theme: str | None = None, demo: Path | None = None) -> int:
    """Run the dashboard until the user quits or the terminal goes away; returns the exit status.

    Textual reads keys from stdin and draws on stderr: without a terminal on both it would spin at full
    CPU forever, so it refuses to start instead (after the config's `tui.keys` were checked, so that a
    mistake there is reported first).
    """
    from opstui.logs import setup_logging
    from opstui.state import StateStore
    from opstui.tui.app import OpsApp

    feed = AlertingEngine(config)
    store = StateStore.in_dir(config.state_dir())
    try:
        actions, commands = action_commands_for(config, feed, store)
        app = OpsApp(config, feed=feed, theme=theme, demo=demo, commands=commands, actions=actions)
        if not (sys.stdin.isatty() and sys.stderr.isatty()):
            raise OpsError("the dashboard needs an interactive terminal; for scripts use `opstui check`")
        # With no daemon, this TUI fires, resolves and delivers the alerts: their log must be kept and
        # redacted, and must not reach the screen Textual draws on.
        setup_logging(file=config.state_dir() / "tui.log")
        app.run()
    finally:
        store.close()
    return app.return_code or 0


def action_commands_for(config: Config, feed: Any, store: Any) -> tuple[Any, list[Any]]:
    """The config's actions (and the built-ins) over the feed's snapshots, as the person at this terminal,
    with the commands that run them and the one that silences an alert; both keep their records in `store`
    (the state database, which the caller closes)."""
    from opstui.actions import Actions, Actor
    from opstui.tui.actions import action_commands, silence_command

    actions = Actions.from_config(config, store=store, snapshot=lambda: feed.snapshot)
    actor = Actor.local("tui")
    return actions, [*action_commands(actions, actor), silence_command(store, actor)]
