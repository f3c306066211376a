"""What the TUI and the bot have when they run a built-in action: a config, its sources read for real, and
`Actions` over that snapshot with a real audit log. Used by the built-in actions' tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from opstui.actions import Actions, Actor, AuditEntry, Plan, RunResult
from opstui.actions.audit import AuditLog
from opstui.actions.builtin import builtin_actions
from opstui.config import Config
from opstui.engine import Engine, build_engine
from opstui.model import Snapshot
from opstui.state import StateStore

if TYPE_CHECKING:
    from opstui.sources.base import Source

ME = Actor.local("tui")


@dataclass
class Done:
    """A finished run as a person sees it: its result, its output lines, and its audit log entry."""

    result: RunResult
    lines: list[str]
    entry: AuditEntry


class ActionWorld:
    def __init__(
        self, config: Config, store: StateStore, *, systemctl: Sequence[str] = ("systemctl",), sources: list[Source]
    ) -> None:
        self.config = config
        self.store = store
        self.engine = Engine(sources, instance="test") if sources else build_engine(config)
        self.snapshot: Snapshot | None = None
        self.actions = Actions(
            builtin_actions(config, systemctl=systemctl),
            audit=AuditLog(store),
            snapshot=lambda: self.snapshot,
            read_only=config.general.read_only,
            kill_grace=config.actions.kill_grace,
        )

    async def look(self) -> Snapshot:
        """Read every source once, as the engine's next tick would."""
        self.snapshot = await self.engine.collect_once()
        return self.snapshot

    async def plan(self, name: str, **args: str) -> Plan:
        return await self.actions.plan(name, actor=ME, args=args)

    async def run(self, name: str, *, typed: str | None = None, **args: str) -> Done:
        """Plan, confirm as a person pressing Confirm (typing `typed` if given), run and wait for the end."""
        plan = await self.plan(name, **args)
        return await self.start(plan, typed=typed)

    async def start(self, plan: Plan, *, typed: str | None = None) -> Done:
        run = await self.actions.start(plan, plan.confirmation("pressed Confirm", typed=typed))
        result = await run.wait()
        return Done(result, [line.text for line in run.lines], self.actions.audit.recent(1)[-1])

    def last_entry(self) -> AuditEntry:
        return self.actions.audit.recent(1)[-1]

    async def close(self) -> None:
        await self.engine.stop()
        self.store.close()
