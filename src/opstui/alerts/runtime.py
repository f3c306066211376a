"""Alerting on a running engine: rules, notifier, samples and the daily report, started and stopped together.

The daemon runs all of it. The TUI shows the same alerts with `attach_alerting`, and may deliver them itself
while no daemon runs (`start_alerting(..., role="tui")`): it then steps back as soon as a daemon appears, and
a daemon that starts waits for a TUI that delivers to step back first, so two processes never send from one
outbox at once.

With several daemons sharing a leader (`[daemon.ha]`), a daemon delivers only while it leads (`leadership`)
and shows the same alerts while it stands by; a TUI then never delivers. If the state database cannot be
read when delivery should start, alerts are shown and delivery starts as soon as it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo

from opstui.alerts.service import Alerting
from opstui.config import Config
from opstui.engine import Engine
from opstui.errors import StateError
from opstui.model import CheckInfo, Level
from opstui.notify.outbox import Outbox
from opstui.notify.sender import Notifier, delivery_check, read_status
from opstui.report import DailyReport, SampleRecorder
from opstui.state import Fenced, Store

if TYPE_CHECKING:
    from opstui.daemon.leader import Leadership

log = logging.getLogger("opstui.alerts")

Role = Literal["daemon", "tui"]
OWNER_KEY = "notify.owner"
OWNER_FRESH = 10.0
"""An owner record older than this belongs to a process that is gone."""
OWNER_EVERY = 2.0
PRUNE_EVERY = 3600.0
ALERT_LOG_KEPT = 90 * 86400.0
SILENCES_KEPT = 30 * 86400.0
DELIVER_RETRY = 5.0
"""Seconds between attempts to start delivering while the state database cannot be read."""


def attach_alerting(engine: Engine, config: Config, store: Store | None = None) -> Alerting:
    """Show alerts without delivering them (the TUI while a daemon runs): rules on every snapshot.

    With a store, silences and the delivery status the daemon recorded are shown too; nothing is written.
    """
    alerting = Alerting(config, store=store, clock=engine.clock)
    if store is not None:
        alerting.extra_checks = lambda: [*stored_delivery_checks(store, engine.clock()), *state_checks(store)]
    engine.processors.append(alerting)
    return alerting


def state_checks(store: Store) -> list[CheckInfo]:
    """The state database's own fact: critical while it refuses (notifications then wait in memory)."""
    if store.problem is None:
        return []
    detail = f"{store.problem}; alerts are evaluated, and notifications wait in memory until it can be written"
    return [
        CheckInfo(key="state", name="state database", kind="state", level=Level.CRITICAL, source="state", detail=detail)
    ]


def prune_history(store: Store, now: float, *, keep_samples: float) -> None:
    """Forget what no report or screen needs any more: old samples, sent notifications, log, silences."""
    store.prune_samples(now - keep_samples)
    Outbox(store).prune(now)
    with store.transaction() as db:
        db.execute("DELETE FROM alert_log WHERE at < ?", (now - ALERT_LOG_KEPT,))
        db.execute("DELETE FROM silences WHERE expires_at < ?", (now - SILENCES_KEPT,))


def stored_delivery_checks(store: Store, now: float) -> Iterable[CheckInfo]:
    """The delivery fact as the delivering process last recorded it (for `opstui check` and a display-only TUI),
    and the Telegram command bot's, as the polling daemon last recorded it."""
    from opstui.bot.status import stored_bot_check

    try:
        waiting, oldest = Outbox(store).backlog()
        check = delivery_check(read_status(store), waiting, oldest, now=now)
    except StateError:
        check = None
    return tuple(c for c in (check, stored_bot_check(store, now)) if c is not None)


async def start_alerting(
    engine: Engine,
    config: Config,
    store: Store,
    *,
    role: Role = "daemon",
    report: bool | None = None,
    leadership: Leadership | None = None,
    counters: Counter[str] | None = None,
) -> AlertRuntime:
    """Run alerting on `engine` (already started) and return the handle to stop it with.

    role="daemon": deliver (while `leadership` says this daemon leads), keep samples and (unless report=False)
    send the daily report; `counters` count Telegram's answers for /metrics.
    role="tui": the same but no report by default, and only while no daemon runs (see the module docstring).
    """
    runtime = AlertRuntime(
        engine,
        config,
        store,
        role=role,
        report=role == "daemon" if report is None else report,
        leadership=leadership,
        counters=counters,
    )
    await runtime.start()
    return runtime


class AlertRuntime:
    def __init__(
        self,
        engine: Engine,
        config: Config,
        store: Store,
        *,
        role: Role = "daemon",
        report: bool = True,
        clock: Callable[[], float] | None = None,
        leadership: Leadership | None = None,
        counters: Counter[str] | None = None,
    ) -> None:
        self.engine = engine
        self.config = config
        self.store = store
        self.role = role
        self.clock = clock or engine.clock
        self.want_report = report
        self.leadership = leadership
        self.counters: Counter[str] = Counter() if counters is None else counters
        self._unlisten: Callable[[], None] | None = None
        self._stopped = False
        self.alerting: Alerting | None = None
        self.notifier: Notifier | None = None
        self.report: DailyReport | None = None
        self.samples: SampleRecorder | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self.delivering = False
        self._owner_id = f"{os.getpid()}:{id(self)}"

    @property
    def shared(self) -> bool:
        """Daemons on several hosts share this store and elect a leader (a TUI then never delivers)."""
        return self.config.daemon.ha.enabled

    async def start(self) -> None:
        if self.role == "daemon":
            if not self.shared:
                await self._wait_for_tui_to_step_back()
            if self._should_deliver():
                self._deliver()
            else:
                self._display()
            if self.leadership is not None:
                self._unlisten = self.leadership.on_change(self._leadership_changed)
        elif self._should_deliver():
            self._deliver()
        else:
            self._display()
        if self.role == "tui" and not self.shared:
            self._watch = asyncio.get_running_loop().create_task(self._watch_daemon(), name="alerting-owner")
        elif self.role == "daemon" and self.engine.scheduler is not None:
            self.engine.scheduler.add_job(
                self._claim, "interval", seconds=OWNER_EVERY, id="notify-owner", max_instances=1, coalesce=True
            )

    async def stop(self) -> None:
        self._stopped = True
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        if self.delivering and self.alerting is not None:
            self.alerting.flush(self.clock())  # what the last snapshots decided, if the database refused it then
        await self._stand_down(display=False)

    def _should_deliver(self) -> bool:
        if self.role == "daemon":
            return self.leadership is None or self.leadership.leading
        try:
            return not self.shared and self._no_daemon()
        except StateError:  # cannot tell whether a daemon runs: show, and let the watch decide later
            return False

    async def _leadership_changed(self, leading: bool) -> None:
        if self._stopped:
            return
        if leading and not self.delivering:
            self._deliver()
        elif not leading and self.delivering:
            log.info("standing by: alerts are shown here, and the leader delivers them")
            await self._stand_down(display=True)

    # ------------------------------------------------------------------------------------------ modes

    def _deliver(self) -> None:
        config = self.config
        sending = config.telegram.configured
        try:
            if self.store.fencing:
                # Wait for any write the previous leader still had under way, and make sure this one leads.
                with self.store.transaction(fenced=True):
                    pass
            alerting = Alerting(config, store=self.store, persist=True, deliver=sending, clock=self.clock)
        except Fenced:
            self._display()
            return
        except StateError as exc:
            log.error(
                "cannot load alert state, so alerts are shown but not delivered; trying again every %.0fs: %s",
                DELIVER_RETRY,
                exc,
            )
            self._display()
            self._retry_deliver()
            return
        self._replace_processor(alerting)
        self.alerting = alerting
        if sending:
            tz = ZoneInfo(config.general.timezone)
            self.notifier = Notifier(config.telegram, self.store, tz=tz, clock=self.clock, counters=self.counters)
            alerting.on_queued = self.notifier.wake
            notifier = self.notifier
            alerting.extra_checks = lambda: [
                *([c] if (c := notifier.check()) is not None else []),
                *state_checks(self.store),
            ]
        else:
            alerting.extra_checks = lambda: state_checks(self.store)
            log.info("no [telegram] token and chat_id: alerts are evaluated and shown, but not sent")
        self.samples = SampleRecorder(self.store)
        self._unsubscribe = self.engine.subscribe(self.samples)
        self.delivering = True
        self._claim()
        self._prune()
        if self.engine.scheduler is not None:
            self.engine.scheduler.add_job(
                self._prune, "interval", seconds=PRUNE_EVERY, id="alerting-prune", max_instances=1, coalesce=True
            )
        if self.notifier is not None:
            self.notifier.start()
        if sending and self.want_report and config.report.enabled:
            self.report = DailyReport(
                config,
                self.store,
                lambda: self.engine.snapshot,
                on_queued=self.notifier.wake if self.notifier else None,
            )
            if self.engine.scheduler is not None:
                self.report.schedule(self.engine.scheduler)
            try:
                self.report.catch_up()
            except StateError as exc:
                log.warning("cannot tell whether a daily report was missed: %s", exc)

    def _retry_deliver(self) -> None:
        if self.engine.scheduler is None or self._stopped:
            return

        def again() -> None:
            if not self.delivering and not self._stopped and self._should_deliver():
                self._deliver()

        run_at = datetime.now(UTC) + timedelta(seconds=DELIVER_RETRY)
        self.engine.scheduler.add_job(again, "date", run_date=run_at, id="alerting-deliver", replace_existing=True)

    def _display(self) -> None:
        alerting = Alerting(self.config, store=self.store, clock=self.clock)
        alerting.extra_checks = lambda: [*stored_delivery_checks(self.store, self.clock()), *state_checks(self.store)]
        self._replace_processor(alerting)
        self.alerting = alerting

    async def _stand_down(self, *, display: bool) -> None:
        if self.notifier is not None:
            await self.notifier.stop()
            self.notifier = None
        if self.samples is not None:
            with contextlib.suppress(StateError):
                self.samples.flush()
            self.samples = None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self.engine.scheduler is not None:
            jobs = ("daily-report", "alerting-prune", "alerting-deliver", *(() if display else ("notify-owner",)))
            for job in jobs:
                if self.engine.scheduler.get_job(job) is not None:
                    self.engine.scheduler.remove_job(job)
        self.report = None
        if self.delivering:
            self.delivering = False
            with contextlib.suppress(StateError):
                owner = self._owner()
                if owner is not None and owner.get("id") == self._owner_id:
                    self.store.set_meta(OWNER_KEY, "{}")
        if display:
            self._display()
        elif self.alerting is not None and self.alerting in self.engine.processors:
            self.engine.processors.remove(self.alerting)

    def _replace_processor(self, alerting: Alerting) -> None:
        processors = self.engine.processors
        if self.alerting is not None and self.alerting in processors:
            processors[processors.index(self.alerting)] = alerting
        else:
            processors.append(alerting)

    def _prune(self) -> None:
        try:
            prune_history(self.store, self.clock(), keep_samples=self.config.report.keep_samples)
        except StateError as exc:
            log.warning("cannot prune old history: %s", exc)

    # ------------------------------------------------------------------------------------------ ownership

    def _claim(self) -> None:
        if self.delivering:
            with contextlib.suppress(StateError):
                owner = {"id": self._owner_id, "pid": os.getpid(), "role": self.role, "at": time.time()}
                self.store.set_meta(OWNER_KEY, json.dumps(owner))

    def _owner(self) -> dict[str, object] | None:
        raw = self.store.get_meta(OWNER_KEY)
        try:
            owner = json.loads(raw) if raw else None
        except ValueError:
            return None
        return owner if isinstance(owner, dict) and owner else None

    def _no_daemon(self) -> bool:
        from opstui.daemon import read_presence

        presence = read_presence(self.store)
        return presence is None or not presence.alive(time.time()) or presence.pid == os.getpid()

    async def _wait_for_tui_to_step_back(self) -> None:
        deadline = time.monotonic() + OWNER_FRESH
        while time.monotonic() < deadline:
            try:
                owner = self._owner()
            except StateError:
                return  # a TUI cannot deliver from a database this daemon cannot read either
            fresh = owner is not None and time.time() - float(owner.get("at", 0) or 0) < OWNER_FRESH  # type: ignore[arg-type]
            if not (fresh and owner and owner.get("role") == "tui" and owner.get("id") != self._owner_id):
                return
            await asyncio.sleep(0.2)
        log.warning("a TUI still delivers alerts after %.0fs; taking over", OWNER_FRESH)

    async def _watch_daemon(self) -> None:
        while True:
            await asyncio.sleep(OWNER_EVERY)
            try:
                no_daemon = self._no_daemon()
                if self.delivering and not no_daemon:
                    log.info("a daemon is running: it delivers alerts from now on")
                    await self._stand_down(display=True)
                elif not self.delivering and no_daemon:
                    log.info("no daemon is running: this TUI delivers alerts")
                    self._deliver()
                else:
                    self._claim()
            except StateError as exc:
                log.warning("alerting cannot read the state store: %s", exc)
