"""Test helpers for alerting: a controllable clock, snapshots built from model types, and a harness that runs the
alerting processor and the notifier against the fake Bot API on that clock (no sleeping through real minutes)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

from opstui.alerts import Alerting
from opstui.config import Config
from opstui.model import (
    CheckInfo,
    DispatchInfo,
    HealthInfo,
    HostMemory,
    LockInfo,
    MemoryInfo,
    ProcessInfo,
    QueueInfo,
    Snapshot,
    SourceStatus,
)
from opstui.notify import Notifier
from opstui.state import StateStore
from telegram_api import ALERTS_CHAT, TOKEN, FakeBotAPI

START = 1_800_000_000.0
"""2027-01-15 08:00 UTC: a fixed moment, so messages and reports are the same on every run."""


class Clock:
    def __init__(self, t: float = START) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> float:
        self.t += seconds
        return self.t


def status(name: str, kind: str, now: float, *, ok: bool = True, error: str | None = None) -> SourceStatus:
    return SourceStatus(
        name=name,
        kind=kind,
        ok=ok,
        checked_at=now,
        last_ok_at=now if ok else now - 60,
        error=None if ok else error or "connection refused at 127.0.0.1:6380",
    )


def process(name: str, status: str = "online", *, restarts: int = 0, source: str = "pm2", **more: Any) -> ProcessInfo:
    return ProcessInfo(
        key=f"pm2:{name}", name=name, manager="pm2", status=status, source=source, restarts_total=restarts, **more
    )


def queue(name: str, depth: int, *, source: str = "redis main", **more: Any) -> QueueInfo:
    return QueueInfo(key=f"{source}/{name}", name=name, kind="list", depth=depth, source=source, **more)


def host(used_percent: float) -> HostMemory:
    total = 8 * 1024**3
    return HostMemory(
        total_bytes=total,
        available_bytes=int(total * (1 - used_percent / 100)),
        used_percent=used_percent,
        swap_total_bytes=0,
        swap_used_percent=0.0,
        source="host",
    )


def health(name: str, ok: bool, *, source: str = "http") -> HealthInfo:
    return HealthInfo(key=f"http:{name}", name=name, url=f"http://127.0.0.1:8080/{name}", ok=ok, source=source)


def lock(name: str, state: Any, *, holder: str | None = "vps-1", source: str = "postgres main") -> LockInfo:
    return LockInfo(key=f"{source}/{name}", name=name, state=state, source=source, holder=holder)


def dispatch(processed: int, sent: int, failed: int, *, last_event_at: float, source: str = "dispatch") -> DispatchInfo:
    return DispatchInfo(
        key="dispatch:report",
        name="report",
        source=source,
        processed=processed,
        sent=sent,
        failed=failed,
        last_event_at=last_event_at,
    )


def check(name: str, kind: str, level: Any, detail: str, *, source: str = "files") -> CheckInfo:
    return CheckInfo(key=f"{kind}:{name}", name=name, kind=kind, level=level, source=source, detail=detail)


def snapshot(
    now: float,
    *,
    down: Iterable[str] = (),
    kinds: Mapping[str, str] | None = None,
    host_percent: float | None = None,
    **sections: Any,
) -> Snapshot:
    """A snapshot at `now` whose sources are the ones its items name (plus `kinds`), all read just now."""
    kinds = dict(kinds or {})
    items = [item for value in sections.values() for item in value]
    for item in items:
        kinds.setdefault(item.source, item.source.split()[0])
    if host_percent is not None:
        kinds.setdefault("host", "host")
    down = set(down)
    sources = {name: status(name, kind, now, ok=name not in down) for name, kind in kinds.items()}
    return Snapshot(
        taken_at=now,
        instance="demo",
        sources=MappingProxyType(sources),
        memory=MemoryInfo(host=host(host_percent) if host_percent is not None else None),
        **sections,
    )


def config(state_dir: Path, api: FakeBotAPI | None = None, **sections: Any) -> Config:
    data: dict[str, Any] = {"general": {"instance": "demo", "timezone": "UTC", "state_dir": str(state_dir)}}
    if api is not None:
        data["telegram"] = {"token": TOKEN, "chat_id": ALERTS_CHAT, "api_base": api.url}
    for name, value in sections.items():
        data.setdefault(name, {}).update(value)
    return Config.model_validate(data)


class Harness:
    """The daemon's alerting as a test drives it: feed snapshots, let the notifier work as time passes."""

    def __init__(self, config: Config, api: FakeBotAPI, clock: Clock) -> None:
        self.api = api
        self.clock = clock
        self.config = config
        self.store = StateStore.in_dir(config.state_dir())
        self.alerting = Alerting(config, store=self.store, deliver=True, clock=clock)
        self.notifier = Notifier(config.telegram, self.store, tz=ZoneInfo("UTC"), clock=clock, jitter=lambda: 1.0)
        self.alerting.extra_checks = lambda: [c] if (c := self.notifier.check()) is not None else []

    @classmethod
    def new(cls, state_dir: Path, api: FakeBotAPI, clock: Clock, **sections: Any) -> Harness:
        return cls(config(state_dir, api, **sections), api, clock)

    def restart(self) -> Harness:
        """A new daemon on the same state directory (this one is dropped as a killed process would be)."""
        return Harness(self.config, self.api, self.clock)

    def feed(self, **kwargs: Any) -> Snapshot:
        return self.alerting(snapshot(self.clock(), **kwargs))

    async def deliver(self, within: float = 0.0) -> None:
        """Let `within` seconds pass (on the test clock) with the notifier sending whatever becomes due."""
        until = self.clock() + within
        while True:
            next_at = await self.notifier.deliver_due()
            if next_at is None or next_at > until:
                break
            self.clock.t = max(self.clock.t, next_at)
        self.clock.t = max(self.clock.t, until)

    def outbox(self, status: str = "pending") -> list[str]:
        return [r["idem_key"] for r in self.store.query("SELECT idem_key FROM outbox WHERE status = ?", (status,))]

    async def close(self) -> None:
        await self.notifier.bot.aclose()
        self.store.close()
