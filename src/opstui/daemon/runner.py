"""The headless daemon: the same engine as the TUI, with no UI, running until SIGTERM or SIGINT.

Start: the host's state store, the leadership (a lease in the shared database with `[daemon.ha]`, else this
daemon alone), the engine, alerting (delivering only while leading), the actions runs go through, the HTTP
endpoint, the heartbeat, then READY=1 to systemd. A one-second scheduler job is the tick that /healthz and
systemd's watchdog watch: a daemon whose scheduler stalls stops pinging, and systemd restarts it.

SIGHUP reloads the config: a new file that does not load (or whose sources cannot be built) is refused with
one log line and the running config stays; a good one replaces the engine and alerting in place, keeping the
history, the leadership, the endpoint and every run under way ([daemon] itself needs a restart).

SIGTERM or SIGINT stops it within `STOP_BUDGET`: nothing new is accepted (the leader-only work such as the
Telegram bot stops first), running actions get until about two seconds in to finish and are then stopped
(SIGTERM, and SIGKILL a second later), the notifier finishes a send under way and marks it, alert state is
saved, sources close, the lease is handed over, and the process exits 0, even when a source is stuck in a
system call (`serve` does not wait for such a thread).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from opstui.config import Config, load_config
from opstui.config.daemon import split_listen
from opstui.daemon.leader import Alone, Leadership, PostgresLease
from opstui.daemon.presence import HEARTBEAT_EVERY, DaemonPresence, withdraw_presence, write_presence
from opstui.daemon.systemd import SystemdNotifier
from opstui.engine import Engine, build_engine
from opstui.errors import OpsError, StateError
from opstui.model import Level
from opstui.state import StateStore, Store
from opstui.units import format_duration

if TYPE_CHECKING:
    from opstui.actions import Actions
    from opstui.alerts.runtime import AlertRuntime
    from opstui.bot import CommandBot
    from opstui.daemon.heartbeat import Heartbeat
    from opstui.daemon.http import Answer, MonitorServer
    from opstui.daemon.metrics import DaemonFacts

log = logging.getLogger("opstui.daemon")

STOP_BUDGET = 4.5
"""Seconds the shutdown may take before we stop waiting: a supervisor's SIGKILL usually follows at 5-10 s."""
ACTIONS_FINISH = 2.0
"""Seconds into a shutdown that running actions get to finish by themselves before they are stopped."""
ACTIONS_KILL = 3.0
"""Seconds into a shutdown at which what is left of their process groups gets SIGKILL."""
TICK_EVERY = 1.0
TICK_STALE = 10.0
"""A scheduler that has not ticked for this long is stalled: /healthz answers 503."""
BUSY_TIMEOUT = 1.0
"""How long a write of the daemon's waits for another process's write to its SQLite store."""


class Daemon:
    """One running daemon; what the HTTP endpoint and the Telegram bot read (`config`, `engine`, `actions`,
    `leadership`, `alerting`) always is the current one, also after a reload."""

    def __init__(
        self,
        config: Config,
        *,
        stop: asyncio.Event | None = None,
        load: Callable[[], Config] | None = None,
    ) -> None:
        self.config = config
        self._stop = stop or asyncio.Event()
        self._load = load or (lambda: load_config(self.config.path))
        self.started_at = time.time()
        self.host = socket.gethostname()
        self.systemd = SystemdNotifier.from_environment()
        self.local: StateStore | None = None
        """This host's SQLite store: presence, the audit log, and everything else without `[daemon.ha]`."""
        self.store: Store | None = None
        """Where alerting keeps its state: the shared PostgreSQL with `[daemon.ha]`, else `local`."""
        self.leadership: Leadership = Alone(
            instance=config.general.instance, host=self.host, pid=os.getpid(), started_at=self.started_at
        )
        self.engine: Engine | None = None
        self.alerting: AlertRuntime | None = None
        self.actions: Actions | None = None
        self.bot: CommandBot | None = None
        self.http: MonitorServer | None = None
        self.heartbeat: Heartbeat | None = None
        self.telegram = Counter[str]()
        """Telegram's answers (`sent`, and failures by kind), across leadership changes and reloads."""
        self.last_tick: float | None = None
        self.ticks = 0
        self.reloads = 0
        self.reload_failures = 0
        self.started = False
        self.stopping = False
        self._retired: list[Actions] = []
        self._bot_unlisten: Callable[[], None] = lambda: None
        self._reloading = asyncio.Lock()
        self._status = 0
        self._tasks: set[asyncio.Task[bool]] = set()

    # ------------------------------------------------------------------------------------------ running

    async def run(self) -> int:
        """Run until the stop event is set or SIGTERM/SIGINT arrives; returns the exit status."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stop_requested, sig)
        loop.add_signal_handler(signal.SIGHUP, self._reload_requested)
        try:
            await self._start_unless_stopped()
            await self._stop.wait()
        except (OpsError, ValueError) as exc:
            # A state dir it cannot create, a database URL a driver refuses: one line a person can act on, not a
            # traceback (whose last line may quote the URL it choked on), and an exit status the supervisor sees.
            log.error("the daemon cannot start: %s", exc)
            self._status = 2
        finally:
            await self._shutdown()
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        log.info("daemon stopped")
        return self._status

    async def _start_unless_stopped(self) -> None:
        # A stop during a slow start (a shared database that does not answer) must not wait for the start.
        starting = asyncio.ensure_future(self._start())
        stopped = asyncio.ensure_future(self._stop.wait())
        await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not starting.done():
            starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting

    def _stop_requested(self, sig: signal.Signals) -> None:
        if self._stop.is_set():
            log.info("%s: stopping already (within %.0fs)", sig.name, STOP_BUDGET)
        self._stop.set()

    def _reload_requested(self) -> None:
        task = asyncio.get_running_loop().create_task(self.reload(), name="config reload")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _start(self) -> None:
        config = self.config
        self.local = StateStore.in_dir(config.state_dir(), busy_timeout=BUSY_TIMEOUT)
        ha = config.daemon.ha
        if ha.enabled:
            from opstui.state_postgres import PostgresStore

            self.store = await asyncio.to_thread(PostgresStore, ha.dsn, timeout=ha.timeout)
            self.leadership = PostgresLease(
                ha.dsn, lease=ha.lease, timeout=ha.timeout, about=self._about(), stores=[self.store]
            )
            await self.leadership.start()
        else:
            self.store = self.local
            await self.leadership.start()
        self.engine = build_engine(config)
        await self._run_engine(self.engine)
        self.alerting = await self._start_alerting(config, self.engine)
        self.actions = self._make_actions(config)
        self._start_bot(config)
        await self._start_endpoint()
        self._start_heartbeat()
        self.started = True
        self._write_presence()
        if self.systemd is not None:
            self.systemd.ready(self.describe())
        log.info(
            "daemon started",
            extra={
                "instance": config.general.instance,
                "config": str(config.path) if config.path else None,
                "sources": [s.name for s in self.engine.sources],
                "role": self.leadership.describe(),
                "listen": self.http.address if self.http else None,
            },
        )

    async def _run_engine(self, engine: Engine) -> None:
        await engine.start()
        scheduler = engine.scheduler
        scheduler.add_job(
            self._tick,
            "interval",
            seconds=TICK_EVERY,
            id="daemon-tick",
            max_instances=1,
            coalesce=True,
            next_run_time=datetime.now(UTC),
        )
        scheduler.add_job(
            self._write_presence, "interval", seconds=HEARTBEAT_EVERY, id="presence", max_instances=1, coalesce=True
        )

    async def _start_alerting(self, config: Config, engine: Engine) -> AlertRuntime:
        from opstui.alerts import start_alerting

        assert self.store is not None
        return await start_alerting(
            engine, config, self.store, role="daemon", leadership=self.leadership, counters=self.telegram
        )

    def _make_actions(self, config: Config) -> Actions:
        # The Telegram bot runs actions through this object too, so a stopping daemon waits for every run.
        from opstui.actions import Actions

        assert self.local is not None
        return Actions.from_config(
            config,
            store=self.local,
            snapshot=lambda: self.engine.snapshot if self.engine else None,
            telegram_allowlist=config.bot.admins,
        )

    def _start_bot(self, config: Config) -> None:
        """The Telegram command bot (opstui.bot), when `[bot] enabled`: it polls only while this daemon leads,
        keeps its offset where alerting keeps its state (shared with [daemon.ha]), and runs `self.actions`."""
        from opstui.bot import start_bot

        assert self.engine is not None and self.store is not None
        self.bot = start_bot(
            config,
            engine=self.engine,
            store=self.store,
            actions=self._current_actions,
            snapshot=lambda: self.engine.snapshot if self.engine else None,
            is_leader=lambda: self.leadership.leading,
            leader=self.leadership.describe,
        )
        if self.bot is not None:
            self._bot_unlisten = self.leadership.on_change(self.bot.leadership_changed)

    def _current_actions(self) -> Actions:
        assert self.actions is not None
        return self.actions

    async def _stop_bot(self, budget: float) -> None:
        if self.bot is not None:
            self._bot_unlisten()
            bot, self.bot = self.bot, None
            await bot.stop(budget)

    async def _start_endpoint(self) -> None:
        listen = split_listen(self.config.daemon.listen) if self.config.daemon.listen else None
        if listen is None:
            return
        from opstui.daemon.http import MonitorServer

        self.http = MonitorServer({"/healthz": self._healthz, "/readyz": self._readyz, "/metrics": self._metrics})
        try:
            address = await self.http.start(*listen)
        except OSError as exc:
            # Another daemon (or anything) on the port must not stop monitoring: say so, and run without it.
            log.error("cannot serve /healthz and /metrics on %s: %s", self.config.daemon.listen, exc.strerror or exc)
            self.http = None
            return
        log.info("serving /healthz, /readyz and /metrics on http://%s", address)

    def _start_heartbeat(self) -> None:
        daemon = self.config.daemon
        if not daemon.heartbeat_url:
            return
        from opstui.daemon.heartbeat import Heartbeat

        self.heartbeat = Heartbeat(daemon.heartbeat_url, every=daemon.heartbeat_every, problems=self.job_problems)
        self.heartbeat.start()

    async def _tick(self) -> None:
        # On the event loop, not in a worker thread: a loop that is stuck stops the tick (and so /healthz and
        # systemd's watchdog notice), and the once-a-second tick costs no thread hand-off.
        self.last_tick = time.monotonic()
        self.ticks += 1
        if self.systemd is not None:
            self.systemd.tick()

    def _about(self) -> dict[str, Any]:
        return {"instance": self.config.general.instance, "host": self.host, "pid": os.getpid()}

    # ------------------------------------------------------------------------------------------ reload

    async def reload(self) -> bool:
        """Load the config again and apply it; False (and one log line) if the new one is refused."""
        async with self._reloading:
            if self.stopping or not self.started:
                return False
            try:
                config = self._load()
                engine = build_engine(config)
            except OpsError as exc:
                self.reload_failures += 1
                reason = "; ".join(str(exc).splitlines())
                log.error("config reload refused; the running config stays: %s", reason, extra={"event": "reload"})
                return False
            kept = self._unreloadable(config)
            if kept:
                log.warning("%s changed in the config: that takes a restart; keeping the running values", kept)
                config = config.model_copy(update={"daemon": self.config.daemon, "general": self._general(config)})
            if self.systemd is not None:
                self.systemd.reloading()
            try:
                await self._replace(config, engine)
            except Exception:
                # Half replaced is worse than restarted: exit 1 and let the supervisor start it afresh.
                log.exception("applying the reloaded config failed; stopping so the supervisor restarts opstui")
                self._status = 1
                self._stop.set()
                return False
            self.reloads += 1
            if self.systemd is not None:
                self.systemd.ready(self.describe())
            log.info(
                "config reloaded",
                extra={"event": "reload", "config": str(config.path), "sources": [s.name for s in engine.sources]},
            )
            return True

    async def _replace(self, config: Config, engine: Engine) -> None:
        assert self.engine is not None and self.alerting is not None
        await self.alerting.stop()
        await self._stop_engine(self.engine, budget=STOP_BUDGET)
        engine.history = self.engine.history  # sparklines and growth rates carry on
        self.config, self.engine = config, engine
        await self._run_engine(engine)
        self.alerting = await self._start_alerting(config, engine)
        if self.actions is not None and any(run.running for run in self.actions.runs):
            self._retired.append(self.actions)
        self.actions = self._make_actions(config)
        if self.bot is not None and self.bot.reconfigure(config):
            self.bot.attach(engine)
        else:
            await self._stop_bot(budget=2.0)
            self._start_bot(config)

    def _unreloadable(self, config: Config) -> str:
        changed = []
        if config.daemon != self.config.daemon:
            changed.append("[daemon]")
        if config.general.state_dir != self.config.general.state_dir:
            changed.append("general.state_dir")
        return " and ".join(changed)

    def _general(self, config: Config) -> Any:
        return config.general.model_copy(update={"state_dir": self.config.general.state_dir})

    # ------------------------------------------------------------------------------------------ stopping

    async def _shutdown(self) -> None:
        begun = time.monotonic()
        self.stopping = True
        if self.systemd is not None:
            self.systemd.stopping()
        log.info("daemon stopping")
        # Nothing new is accepted: the endpoint and the heartbeat stop, and so does leader-only work (the bot).
        if self.http is not None:
            await self.http.close()
        if self.heartbeat is not None:
            await self.heartbeat.stop()
        await self.leadership.stop_work()
        loop = asyncio.get_running_loop()
        # The bot stops polling at once, and edits its messages as the runs it follows end (beside the draining).
        bot_budget = max(0.5, begun + STOP_BUDGET - 0.5 - time.monotonic())
        bot_stopped = loop.create_task(self._stop_bot(budget=bot_budget))
        drained = loop.create_task(self._drain_actions(begun))
        try:
            await asyncio.wait_for(self._stop_parts(), max(0.5, begun + STOP_BUDGET - 0.5 - time.monotonic()))
        except TimeoutError:
            log.warning("the daemon's parts did not stop within %.1fs; exiting anyway", STOP_BUDGET)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(drained, bot_stopped), max(0.1, begun + STOP_BUDGET - time.monotonic())
            )
        if self.store is not None and self.store is not self.local:
            await asyncio.to_thread(self.store.close)
        if self.local is not None:
            with contextlib.suppress(StateError):
                withdraw_presence(self.local)
            self.local.close()
        if self.systemd is not None:
            self.systemd.close()
        log.info("stopped in %s", f"{time.monotonic() - begun:.1f}s")

    async def _stop_parts(self) -> None:
        if self.alerting is not None:
            # First, so a notification being sent is marked as sent before anything closes.
            await self.alerting.stop()
        if self.engine is not None:
            await self._stop_engine(self.engine, budget=2.0)
        await self.leadership.stop()  # hands the lease over once nothing more can be sent

    @staticmethod
    async def _stop_engine(engine: Engine, *, budget: float) -> None:
        try:
            await asyncio.wait_for(engine.stop(), timeout=budget)
        except TimeoutError:
            log.warning("sources did not close within %s; going on without them", format_duration(budget))

    async def _drain_actions(self, begun: float) -> None:
        """Let running actions finish until ACTIONS_FINISH, then stop their process groups (SIGKILL at
        ACTIONS_KILL), and wait for each to be recorded in the audit log."""
        runs = [run for actions in (*self._retired, self.actions) if actions for run in actions.runs if run.running]
        if not runs:
            return
        log.info("waiting up to %.0fs for %d running action(s) to finish", ACTIONS_FINISH, len(runs))
        waiting = {asyncio.ensure_future(run.wait()) for run in runs}
        for deadline in (ACTIONS_FINISH, ACTIONS_KILL, STOP_BUDGET - 0.5):
            _, waiting = await asyncio.wait(waiting, timeout=max(0.0, begun + deadline - time.monotonic()))
            if not waiting:
                return
            for run in runs:
                if run.running:
                    run.cancel("the daemon is stopping")  # once: SIGTERM to its group; twice: SIGKILL now
        log.warning("%d action(s) had not ended when the daemon stopped", len(waiting))

    # ------------------------------------------------------------------------------------------ reading

    def describe(self) -> str:
        """One line for systemd's status and the log: role, alerts, sources."""
        parts = [self.leadership.describe()]
        if self.engine is not None:
            snapshot = self.engine.snapshot
            firing = sum(a.state == "firing" for a in snapshot.alerts)
            failing = sum(not s.ok and s.checked_at is not None for s in snapshot.sources.values())
            parts.append(f"{firing} alert{'s' if firing != 1 else ''} firing")
            if failing:
                parts.append(f"{failing} source{'s' if failing != 1 else ''} failing")
        return "; ".join(parts)

    def tick_age(self) -> float | None:
        return None if self.last_tick is None else time.monotonic() - self.last_tick

    def job_problems(self) -> list[str]:
        """Why this daemon cannot do its job now (the heartbeat's /fail, /readyz): empty when it can."""
        problems = []
        age = self.tick_age()
        if self.started and (age is None or age > TICK_STALE):
            problems.append(f"the scheduler has not ticked for {format_duration(age or 0)}")
        for store in {id(s): s for s in (self.local, self.store) if s is not None}.values():
            if store.problem is not None:
                problems.append(store.problem)
        if self.leadership.shared and self.leadership.leader is None:
            problems.append(f"who leads is unknown: {self.leadership.problem or 'the lease was not read yet'}")
        notifier = self.alerting.notifier if self.alerting is not None else None
        check = notifier.check(refresh=False) if notifier is not None else None
        if check is not None and check.level is not Level.OK:
            problems.append(check.detail or "Telegram delivery fails")
        return problems

    def readiness_problems(self) -> list[str]:
        if self.stopping:
            return ["stopping"]
        if not self.started or self.engine is None:
            return ["starting"]
        unread = [s.name for s in self.engine.snapshot.sources.values() if s.checked_at is None]
        return [*self.job_problems(), *([f"not read yet: {', '.join(unread)}"] if unread else [])]

    def facts(self) -> DaemonFacts:
        from opstui.daemon.metrics import DaemonFacts

        # The backlog the notifier last read, not a query per scrape: a scrape runs on the event loop, and a
        # shared database that stopped answering would hold every source up for its timeout.
        notifier = self.alerting.notifier if self.alerting is not None else None
        pending, oldest_due = notifier.backlog if notifier is not None else (None, None)
        oldest = None if oldest_due is None else max(0.0, time.time() - oldest_due)
        return DaemonFacts(
            instance=self.config.general.instance,
            started_at=self.started_at,
            last_tick_age=self.tick_age(),
            ticks=self.ticks,
            leader=self.leadership.leading,
            fencing_token=self.leadership.token,
            outbox_pending=pending,
            outbox_oldest_age=oldest,
            telegram=dict(self.telegram),
            state_ok=all(s.problem is None for s in (self.local, self.store) if s is not None),
            ready=not self.readiness_problems(),
            reloads=self.reloads,
            reload_failures=self.reload_failures,
            rss_bytes=_rss(),
        )

    def presence(self) -> DaemonPresence:
        shared = self.leadership.shared
        leader = self.leadership.leader
        return DaemonPresence(
            pid=os.getpid(),
            host=self.host,
            instance=self.config.general.instance,
            started_at=self.started_at,
            heartbeat_at=time.time(),
            leader=self.leadership.leading if shared else None,
            led_by=leader.name if shared and leader is not None else None,
            token=self.leadership.token,
            listen=self.http.address if self.http is not None else None,
        )

    def _write_presence(self) -> None:
        if self.local is None or self.stopping:
            return
        with contextlib.suppress(StateError):  # the store's own problem says so (/readyz, heartbeat, alert)
            write_presence(self.local, self.presence())
        if self.systemd is not None:
            self.systemd.status(self.describe())

    # ------------------------------------------------------------------------------------------ endpoints

    def _healthz(self) -> Answer:
        from opstui.daemon.http import Answer

        age = self.tick_age()
        ticking = age is not None and age <= TICK_STALE
        snapshot = self.engine.snapshot if self.engine is not None else None
        document = {
            "status": "ok" if ticking else ("starting" if age is None else "stalled"),
            "last_tick_age_seconds": None if age is None else round(age, 3),
            "ticks": self.ticks,
            "snapshot_age_seconds": None if snapshot is None else round(max(0.0, time.time() - snapshot.taken_at), 3),
            "leader": self.leadership.leading,
        }
        return Answer.json(200 if ticking else 503, document)

    def _readyz(self) -> Answer:
        from opstui.daemon.http import Answer

        problems = self.readiness_problems()
        document: dict[str, Any] = {"ready": not problems, "role": self.leadership.describe()}
        if problems:
            document["problems"] = problems
        return Answer.json(503 if problems else 200, document)

    def _metrics(self) -> Answer:
        from opstui.daemon.http import Answer
        from opstui.daemon.metrics import render

        assert self.engine is not None
        return Answer(200, render(self.engine.snapshot, self.facts()), "text/plain; version=0.0.4; charset=utf-8")


def _stuck_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon and t.is_alive()]


def _rss() -> int | None:
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except Exception:
        return None


async def run_daemon(config: Config, *, stop: asyncio.Event | None = None) -> int:
    """Run a daemon until `stop` is set or a termination signal arrives; returns the exit status."""
    return await Daemon(config, stop=stop).run()


def serve(config: Config, *, load: Callable[[], Config] | None = None) -> int:
    """`opstui daemon`: run a daemon until it is stopped, and exit within the stop budget whatever is stuck."""
    return run_until_stopped(Daemon(config, load=load).run())


def run_until_stopped(main: Coroutine[Any, Any, int]) -> int:
    """Run `main` on a fresh event loop; return its status, or exit the process at once if threads are stuck.

    asyncio.run() would wait for every worker thread at the end, and a thread stuck in a system call (a read of
    a hung NFS file, a FIFO nobody writes) never ends; a stopped daemon must still exit, so such threads are
    left behind and the process ends with os._exit once the log is flushed.
    """
    loop = asyncio.new_event_loop()
    # Room for a few stuck reads besides the sources' and the actions' own threads.
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="opstui")
    loop.set_default_executor(executor)
    status = 1
    try:
        status = loop.run_until_complete(main)
    finally:
        for task in asyncio.all_tasks(loop):
            task.cancel()
        with contextlib.suppress(Exception):
            loop.run_until_complete(asyncio.wait_for(loop.shutdown_asyncgens(), 0.5))
        # Not loop.shutdown_default_executor(): it joins every worker, and a stuck one never ends.
        executor.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + 0.2
        while _stuck_threads() and time.monotonic() < deadline:
            time.sleep(0.02)
        stuck = _stuck_threads()
        if stuck:
            log.warning("%d thread(s) still stuck in a read; exiting without waiting for them", len(stuck))
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
        loop.close()
    return status
