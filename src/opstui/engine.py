"""The engine: runs every source on its own schedule and publishes one immutable snapshot to every face.

sources -> (engine: status, last good facts, history) -> processors (rules, alerts) -> subscribers (TUI,
notifier, metrics, `opstui check`). A slow or failing source never delays or breaks another: each runs as
its own APScheduler job under its own timeout, and whatever it raises becomes its status.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from types import MappingProxyType
from typing import Any

from opstui.config import Config
from opstui.errors import SourceError
from opstui.model import (
    QUEUE_DEPTH,
    Facts,
    MemoryInfo,
    QueueInfo,
    Series,
    Snapshot,
    SourceStatus,
    growth_per_minute,
    iter_metric_values,
    series_key,
)
from opstui.redact import redact
from opstui.sources.base import Source
from opstui.units import format_duration

log = logging.getLogger(__name__)

Subscriber = Callable[[Snapshot], None]
Processor = Callable[[Snapshot], Snapshot]

HISTORY_POINTS = 360
"""Points kept per series: 12 minutes at a 2 s interval, enough for sparklines and growth per minute."""
SERIES_IDLE_DROP = 900.0
"""A series not updated for this many seconds (its item is gone) is dropped."""
PUBLISH_WAIT = 0.25
"""Seconds a result waits for the sources still reading, to be published with theirs: one snapshot built and
judged by the alert rules per round instead of one per source (each judging costs ~25 ms with 1,000 queues)."""


class History:
    """Bounded (time, value) series per metric and item; each series is an immutable tuple, replaced on append."""

    def __init__(self, points: int = HISTORY_POINTS) -> None:
        self.points = points
        self._series: dict[str, Series] = {}

    def record(self, key: str, t: float, value: float) -> None:
        old = self._series.get(key, ())
        if old and old[-1][0] == t:
            return
        keep = old[-(self.points - 1) :] if len(old) >= self.points else old
        self._series[key] = (*keep, (t, value))

    def get(self, key: str) -> Series:
        return self._series.get(key, ())

    def prune(self, now: float) -> None:
        for key in [k for k, s in self._series.items() if s and now - s[-1][0] > SERIES_IDLE_DROP]:
            del self._series[key]

    def frozen(self) -> MappingProxyType[str, Series]:
        return MappingProxyType(dict(self._series))


class Engine:
    """Owns the sources, their schedule, their last good facts and the latest snapshot."""

    def __init__(
        self,
        sources: Iterable[Source],
        *,
        instance: str,
        clock: Callable[[], float] = time.time,
        history_points: int = HISTORY_POINTS,
    ) -> None:
        self.sources = list(sources)
        self.instance = instance
        self.clock = clock
        self.history = History(history_points)
        self.processors: list[Processor] = []
        self._subscribers: list[Subscriber] = []
        self._facts: dict[str, Facts] = {}
        self._status: dict[str, SourceStatus] = {
            s.name: SourceStatus(name=s.name, kind=s.kind, ok=False, error="not read yet", provides=s.provides)
            for s in self.sources
        }
        self._sequence = 0
        self._snapshot = self._build()
        self._publish_handle: asyncio.Handle | None = None
        self._running: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self.scheduler: Any = None
        """The APScheduler AsyncIOScheduler once started; other parts (reports) add their jobs to it."""

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call `callback(snapshot)` on the event loop after every publish; returns an unsubscribe function.

        Callbacks must be quick and must not raise (a raising subscriber is logged and kept).
        """
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    async def start(self) -> None:
        """Schedule every source at its interval, starting now; returns at once."""
        from apscheduler.schedulers.asyncio import AsyncIOScheduler
        from apscheduler.triggers.interval import IntervalTrigger

        scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop(), timezone="UTC")
        now = datetime.now(tz=scheduler.timezone)
        for source in self.sources:
            source.on_update = functools.partial(self._pushed, source)
            scheduler.add_job(
                self.run_source,
                IntervalTrigger(seconds=source.interval),
                args=[source],
                id=f"source:{source.name}",
                name=f"source {source.name}",
                next_run_time=now,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=max(1, int(source.interval)),
            )
        scheduler.start()
        self.scheduler = scheduler

    def _pushed(self, source: Source, facts: Facts) -> None:
        """Facts a source delivered between polls (see `Source.on_update`)."""
        self.record(source, facts, None)

    async def stop(self) -> None:
        """Stop scheduling, cancel collections under way and close every source (all at once, each within 2 s)."""
        self._stopping = True
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None
        for source in self.sources:
            source.on_update = None
        for task in list(self._running):
            task.cancel()
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        await asyncio.gather(*(self._close(source) for source in self.sources))

    @staticmethod
    async def _close(source: Source) -> None:
        try:
            await asyncio.wait_for(source.close(), timeout=2.0)
        except Exception as exc:  # closing must never stop the others from closing
            log.warning("closing source %s failed: %s", source.name, redact(str(exc)) or type(exc).__name__)

    async def collect_once(self) -> Snapshot:
        """Run every source once, concurrently, and return the snapshot (for `opstui check`)."""
        await asyncio.gather(*(self.run_source(s) for s in self.sources))
        self.flush()
        return self._snapshot

    def flush(self) -> None:
        """Publish now what is waiting to be published, instead of at the end of this loop iteration."""
        if self._publish_handle is not None:
            self._publish_handle.cancel()
            self._publish()

    async def run_source(self, source: Source) -> None:
        """Collect from one source under its timeout and fold the result in; never raises (but cancellation)."""
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        started = time.perf_counter()
        facts: Facts | None = None
        error: str | None = None
        try:
            facts = await asyncio.wait_for(source.collect(), timeout=source.timeout)
        except TimeoutError:
            error = f"timed out after {format_duration(source.timeout)}"
        except SourceError as exc:
            error = str(exc) or type(exc).__name__
        except asyncio.CancelledError:
            if self._stopping:
                return  # the engine stops: the read is abandoned, not failed (and not an error to log)
            raise
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            log.debug("source %s raised", source.name, exc_info=True)
        finally:
            if task is not None:
                self._running.discard(task)
        self.record(source, facts, error, duration_ms=(time.perf_counter() - started) * 1000)

    def record(
        self, source: Source, facts: Facts | None, error: str | None, *, duration_ms: float | None = None
    ) -> None:
        """Fold one collection into the engine's state and publish (coalesced with others in the same tick).

        Public so that push-based readers (PM2's event socket) can deliver facts between polls.
        """
        now = self.clock()
        previous = self._status.get(source.name)
        if facts is not None:
            facts = self._with_history(scrubbed(facts), now)
            self._facts[source.name] = facts
            status = SourceStatus(
                name=source.name,
                kind=source.kind,
                provides=source.provides,
                ok=True,
                checked_at=now,
                last_ok_at=now,
                duration_ms=duration_ms,
                detail=source.detail,
            )
            if previous is not None and not previous.ok and previous.checked_at is not None:
                log.info("source %s recovered", source.name)
        else:
            error = redact(error or "failed")
            status = SourceStatus(
                name=source.name,
                kind=source.kind,
                provides=source.provides,
                ok=False,
                checked_at=now,
                last_ok_at=previous.last_ok_at if previous else None,
                error=error,
                duration_ms=duration_ms,
                detail=source.detail,
            )
            if previous is None or previous.ok or previous.error != error:
                log.warning("source %s failed: %s", source.name, error)
        self._status[source.name] = status
        self._schedule_publish()

    def _with_history(self, facts: Facts, now: float) -> Facts:
        for metric, item, value in iter_metric_values(facts):
            self.history.record(series_key(metric, item.key), now, value)
        if not facts.queues:
            return facts
        queues = tuple(self._with_growth(q) for q in facts.queues)
        return dataclasses.replace(facts, queues=queues)

    def _with_growth(self, queue: QueueInfo) -> QueueInfo:
        if queue.growth_per_min is not None:
            return queue
        growth = growth_per_minute(self.history.get(series_key(QUEUE_DEPTH, queue.key)))
        return queue if growth is None else dataclasses.replace(queue, growth_per_min=round(growth, 1))

    def _schedule_publish(self) -> None:
        # Results that arrive in the same loop iteration are published once; so are results of sources that
        # read at the same time (their timers fire together), unless one takes longer than PUBLISH_WAIT.
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._publish()
            return
        waiting = isinstance(self._publish_handle, asyncio.TimerHandle)
        if self._running:
            if self._publish_handle is None:
                self._publish_handle = loop.call_later(PUBLISH_WAIT, self._publish)
            return
        if self._publish_handle is not None and not waiting:
            return
        if self._publish_handle is not None:
            self._publish_handle.cancel()  # the sources it waited for are done
        self._publish_handle = loop.call_soon(self._publish)

    def _publish(self) -> None:
        self._publish_handle = None
        self.history.prune(self.clock())
        snapshot = self._build()
        for processor in self.processors:
            try:
                snapshot = processor(snapshot)
            except Exception:
                log.exception("processor %r failed; publishing without it", processor)
        self._snapshot = snapshot
        for callback in list(self._subscribers):
            try:
                callback(snapshot)
            except Exception:
                log.exception("subscriber %r failed", callback)

    def _build(self) -> Snapshot:
        self._sequence += 1
        ordered = [self._facts[s.name] for s in self.sources if s.name in self._facts]
        hosts = [f.host for f in ordered if f.host is not None]
        return Snapshot(
            taken_at=self.clock(),
            instance=self.instance,
            sources=MappingProxyType(dict(self._status)),
            processes=tuple(p for f in ordered for p in f.processes),
            queues=tuple(q for f in ordered for q in f.queues),
            memory=MemoryInfo(
                host=hosts[0] if hosts else None, redis=tuple(r for f in ordered for r in f.redis_memory)
            ),
            locks=tuple(x for f in ordered for x in f.locks),
            dispatch=tuple(x for f in ordered for x in f.dispatch),
            health=tuple(x for f in ordered for x in f.health),
            activity=tuple(x for f in ordered for x in f.activity),
            logs=tuple(x for f in ordered for x in f.logs),
            checks=tuple(x for f in ordered for x in f.checks),
            series=self.history.frozen(),
            sequence=self._sequence,
        )


_TEXT_FIELDS = ("error", "detail")
"""Fields of facts that carry text a system wrote (an error message, a health body): masked before any face."""


def scrubbed(facts: Facts) -> Facts:
    """`facts` with secrets masked in every text a system wrote, so no face can show one (a health body with
    a DSN in its error, a queue error quoting a URL). Items without such text are kept as they are."""
    changes: dict[str, Any] = {}
    for section in dataclasses.fields(facts):
        items = getattr(facts, section.name)
        if isinstance(items, tuple) and items:
            cleaned = tuple(_scrub_item(item) for item in items)
            if any(new is not old for new, old in zip(cleaned, items, strict=True)):
                changes[section.name] = cleaned
    return dataclasses.replace(facts, **changes) if changes else facts


def _scrub_item(item: Any) -> Any:
    changes: dict[str, Any] = {}
    for name in _TEXT_FIELDS:
        text = getattr(item, name, None)
        if isinstance(text, str) and text and (masked := redact(text)) != text:
            changes[name] = masked
    components = getattr(item, "components", None)
    if components:
        cleaned = tuple(_scrub_item(c) for c in components)
        if any(new is not old for new, old in zip(cleaned, components, strict=True)):
            changes["components"] = cleaned
    return dataclasses.replace(item, **changes) if changes else item


def build_engine(config: Config, *, clock: Callable[[], float] = time.time) -> Engine:
    """An engine with every source the config describes."""
    from opstui.sources import build_sources

    return Engine(build_sources(config), instance=config.general.instance, clock=clock)


@contextlib.asynccontextmanager
async def running(engine: Engine) -> Any:
    """`async with running(engine):` starts the schedule and always stops it."""
    await engine.start()
    try:
        yield engine
    finally:
        await engine.stop()
