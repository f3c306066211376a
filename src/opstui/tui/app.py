"""The dashboard app: subscribes to the engine and renders each snapshot."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual.app import App, ComposeResult
from textual.message import Message
from textual.widgets import Footer, Header, Static

from opstui.check import render_text
from opstui.config import Config
from opstui.engine import Engine, build_engine
from opstui.model import Snapshot


class SnapshotReady(Message):
    """A new snapshot from the engine; a newer one replaces an older one still in the queue."""

    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__()
        self.snapshot = snapshot

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, SnapshotReady)


class OpsApp(App[int]):
    TITLE = "opstui"
    BINDINGS: ClassVar = [("ctrl+q", "quit", "Quit")]

    def __init__(
        self, config: Config, *, engine: Engine | None = None, theme_name: str | None = None, demo: Path | None = None
    ) -> None:
        super().__init__()
        self.config = config
        self.engine = engine or build_engine(config)
        self.demo = demo
        self.sub_title = config.general.instance + (" (demo)" if demo else "")

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("collecting...", id="overview")
        yield Footer()

    async def on_mount(self) -> None:
        self.engine.subscribe(self._on_snapshot)
        await self.engine.start()

    def _on_snapshot(self, snapshot: Snapshot) -> None:
        self.post_message(SnapshotReady(snapshot))

    async def on_unmount(self) -> None:
        await self.engine.stop()

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        self.query_one("#overview", Static).update(render_text(message.snapshot))
