"""The alerting processor: snapshot -> rules -> lifecycle -> `snapshot.alerts`, and, when it delivers, the outbox.

The same processor runs in the daemon (persisting alert state and queueing notifications), in the TUI (showing
the same alerts, queueing only when no daemon does) and in `opstui check` (once, with no time thresholds).

Delivery decisions, all made here so that every face agrees on them:
- a firing alert queues one message, and its resolution one more, but only if the firing one was queued;
- while muted (silence, maintenance window) nothing is queued; if it still fires afterwards, it is queued then;
- reminders every `repeat_every` while it fires, and one message when it gets worse (warning -> critical);
- while a root cause (a Redis or PostgreSQL source down) is pending or firing, alerts of `fold_rules` are folded
  under it: they join its message if they fire before that has gone out, and are otherwise quiet until it
  resolves; one still firing then gets its own message.
State and queued messages are written in one transaction, so a crash never loses a transition nor queues one
twice, and a restart picks up where the last run stopped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from opstui.alerts.lifecycle import AlertState, Thresholds, forgettable, step
from opstui.alerts.rules import Observation, RuleContext, observe, rule_config
from opstui.alerts.silences import MaintenanceWindows, Silence, active_silences, describe_window, matches
from opstui.config import Config
from opstui.errors import StateError
from opstui.model import METRICS, AlertInfo, CheckInfo, Level, ProcessInfo, Snapshot, series_key
from opstui.notify.outbox import enqueue
from opstui.redact import redact
from opstui.state import Db, Fenced, Store

log = logging.getLogger("opstui.alerts")

UNDELIVERABLE_RULES = frozenset({"delivery", "state"})
"""Alerts about delivery itself and about the state database the outbox lives in are shown (and fail the
daemon's heartbeat and /readyz), never sent through the channel that is failing."""
_RESTARTS = next(m for m in METRICS[ProcessInfo] if m.attr == "restarts_total")


@dataclass(frozen=True, slots=True)
class Transition:
    event: str
    """fired or resolved."""
    state: AlertState


class Alerting:
    """An engine processor; call it with a snapshot, get the snapshot back with `alerts` filled in.

    store: where silences are read from and, with `persist`, alert state is kept.
    persist: keep alert state in the store (only one process should: the daemon, or the TUI when no daemon runs).
    deliver: queue notifications in the store's outbox (implies persist).
    once: judge a single snapshot with no time thresholds (`opstui check`).
    """

    def __init__(
        self,
        config: Config,
        *,
        store: Store | None = None,
        persist: bool = False,
        deliver: bool = False,
        once: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.cfg = config.alerts
        self.store = store
        self.persist = (persist or deliver) and store is not None and not once
        self.deliver = deliver and self.persist
        self.once = once
        self.clock = clock
        self.ctx = RuleContext(self.cfg, once=once)
        self.windows = MaintenanceWindows(self.cfg.maintenance, default_timezone=config.general.timezone)
        self.states: dict[str, AlertState] = {}
        self.on_queued: Callable[[], None] | None = None
        """Called after notifications were queued (the notifier's wake-up)."""
        self.extra_checks: Callable[[], Iterable[CheckInfo]] | None = None
        """Facts to judge besides the snapshot's (the notifier's delivery status)."""
        self._dirty: set[str] = set()
        self._gone: set[str] = set()
        self._queue: list[tuple[str, str, dict[str, Any], str | None]] = []
        """(idempotency key, kind, payload, key of the message to join) decided, not yet in the outbox."""
        self._unlogged: list[tuple[Transition, bool]] = []
        self._write_failed = False
        self._known_silences: list[Silence] = []
        self._silences_unread = False
        if self.persist:
            self._load()
        if store is not None:
            self._seed_restarts(store)

    # ------------------------------------------------------------------------------------------ processor

    def __call__(self, snapshot: Snapshot) -> Snapshot:
        if not self.cfg.enabled:
            return snapshot
        if self.extra_checks is not None:
            extra = tuple(self.extra_checks())
            if extra:
                snapshot = snapshot.replace(checks=(*snapshot.checks, *extra))
        now = snapshot.taken_at
        transitions = self._judge(snapshot, now)
        self._fold_and_mute(now)
        notified = {t.state.key for t in transitions if t.state.notified}
        if self.deliver:
            self._notifications(transitions, now)
        self._unlogged += [(t, t.state.key in notified or t.state.notified) for t in transitions]
        self._forget(now)
        if self.persist:
            self._save(now)
        return snapshot.replace(alerts=self.alerts(now))

    def alerts(self, now: float) -> tuple[AlertInfo, ...]:
        """What the TUI and `opstui check` list: firing (or silenced), pending, and recently resolved."""
        found = []
        for st in self.states.values():
            since = st.since
            if st.phase == "firing":
                state = "silenced" if st.muted_by else "firing"
            elif st.phase == "pending":
                state = "pending"
            elif st.resolved_at is not None and now - st.resolved_at <= self.cfg.keep_resolved:
                state, since = "resolved", st.resolved_at
            else:
                continue
            found.append(
                AlertInfo(
                    key=st.key,
                    rule=st.rule,
                    level=Level(st.level),
                    state=state,
                    summary=st.summary,
                    since=since,
                    detail=st.detail,
                    subject=st.subject,
                    source=st.source,
                    muted_by=st.muted_by,
                    cause=st.cause,
                    flapping=st.flapping,
                )
            )
        order = {"firing": 0, "silenced": 0, "pending": 1, "resolved": 2}
        found.sort(key=lambda a: (order[a.state], -a.level, a.since or 0.0, a.key))
        return tuple(found)

    # ------------------------------------------------------------------------------------------ judging

    def thresholds(self, rule: str) -> Thresholds:
        if self.once:
            return Thresholds(flap_changes=self.cfg.flap_window, flap_fires=2**31)
        section = rule_config(self.cfg, rule)
        return Thresholds(
            for_=section.for_,
            failures=section.failures,
            successes=section.successes or self.cfg.successes,
            flap_window=self.cfg.flap_window,
            flap_changes=self.cfg.flap_changes,
            flap_fires=self.cfg.flap_fires,
            flap_period=self.cfg.flap_period,
            flap_quiet=self.cfg.flap_quiet,
        )

    def _judge(self, snapshot: Snapshot, now: float) -> list[Transition]:
        transitions: list[Transition] = []
        seen: set[str] = set()
        for obs in observe(snapshot, self.ctx):
            seen.add(obs.key)
            st = self.states.get(obs.key)
            status = snapshot.sources.get(obs.source) if obs.source else None
            stale = status is not None and not status.ok and not obs.judges_source
            if obs.hold or stale or (st is None and not obs.bad):
                continue
            if st is None:
                st = self.states[obs.key] = AlertState(key=obs.key, rule=obs.rule, subject=obs.subject)
            if obs.bad:
                self._describe(st, obs, status.kind if status else None)
            check = status.checked_at if status is not None and status.checked_at is not None else now
            transitions += self._step(st, bad=obs.bad, check=check, now=now)
        for st in [s for s in self.states.values() if s.key not in seen]:
            # What it was about is gone (or its rule was turned off): a good check, unless its source is failing
            # and simply shows its last good facts.
            status = snapshot.sources.get(st.source) if st.source else None
            if status is not None and not status.ok and st.rule != "source_down":
                continue
            check = status.checked_at if status is not None and status.checked_at is not None else now
            transitions += self._step(st, bad=False, check=check, now=now)
        return transitions

    @staticmethod
    def _describe(st: AlertState, obs: Observation, source_kind: str | None) -> None:
        # Facts can carry secrets (a health URL with a password, an error quoting a DSN): alerts are shown
        # and sent, so they are masked here, once.
        st.level, st.summary = int(obs.level), redact(obs.summary)
        st.detail = redact(obs.detail) if obs.detail else None
        st.subject, st.source, st.source_kind = obs.subject, obs.source, source_kind

    def _step(self, st: AlertState, *, bad: bool, check: float, now: float) -> list[Transition]:
        before = st.last_check
        event = step(st, bad=bad, check=check, now=now, th=self.thresholds(st.rule))
        if st.last_check != before:
            self._dirty.add(st.key)
        if event == "fired":
            log.info("alert firing: %s", st.summary, extra={"alert": st.key, "level": Level(st.level).label})
        elif event == "resolved":
            log.info("alert resolved: %s", st.summary, extra={"alert": st.key})
        return [Transition(event, st)] if event else []

    def _fold_and_mute(self, now: float) -> None:
        roots = sorted(
            (
                st
                for st in self.states.values()
                if st.rule == "source_down" and st.source_kind in self.cfg.fold_causes and st.phase != "ok"
            ),
            key=lambda st: (st.since or 0.0, st.key),
        )
        silences = self._silences(now)
        windows = self.windows.active(now) if self.cfg.maintenance else []
        for st in self.states.values():
            cause = None
            if st.phase != "ok" and st.rule in self.cfg.fold_rules:
                # A root cause folds only under one that began before it (two Redis sources down together
                # make one message, not two alerts waiting on each other).
                earlier = roots[: roots.index(st)] if st in roots else roots
                cause = next((root.key for root in earlier if self._caused_by(st, root, now)), None)
            muted = self._muted_by(st, silences, windows) if st.phase == "firing" else None
            if (cause, muted) != (st.cause, st.muted_by):
                st.cause, st.muted_by = cause, muted
                self._dirty.add(st.key)

    def _caused_by(self, st: AlertState, root: AlertState, now: float) -> bool:
        """Whether `st` may be a consequence of `root`: it comes from the root's own source, or it began
        within fold_window of the root (nothing else links an alert to a server opstui could check)."""
        if st.source is not None and st.source == root.source:
            return True
        began, root_began = st.since or now, root.since or now
        return root_began - self.cfg.fold_window <= began <= root_began + self.cfg.fold_window

    def _silences(self, now: float) -> list[Silence]:
        if self.store is None:
            return []
        try:
            self._known_silences = active_silences(self.store, now=now)
        except StateError as exc:
            # Keep muting what was muted: forgetting a silence while the database is away would send the very
            # messages it was set to hold back.
            if not self._silences_unread:
                log.warning("cannot read silences, keeping the last ones read: %s", exc)
            self._silences_unread = True
            return [s for s in self._known_silences if s.expires_at > now]
        self._silences_unread = False
        return self._known_silences

    @staticmethod
    def _muted_by(st: AlertState, silences: list[Silence], windows: list[Any]) -> str | None:
        for silence in silences:
            if matches(silence.pattern, key=st.key, rule=st.rule, subject=st.subject):
                return silence.describe()
        for window in windows:
            if any(matches(p, key=st.key, rule=st.rule, subject=st.subject) for p in window.match):
                return describe_window(window)
        return None

    # ------------------------------------------------------------------------------------------ delivery

    def _notifications(self, transitions: list[Transition], now: float) -> None:
        """Decide what to queue: firing, resolved, worse, reminders (see the module docstring)."""
        resolved_now = {t.state.key for t in transitions if t.event == "resolved"}
        for st in self.states.values():
            if st.rule in UNDELIVERABLE_RULES:
                continue
            if st.key in resolved_now:
                if st.notified:
                    self._add(st, "resolved", now)
                    st.notified = False
                continue
            if st.phase != "firing" or st.muted_by:
                continue
            if not st.notified:
                if self._folded_quietly(st):
                    continue
                self._add(st, "firing", now)
                st.notified = True
                st.notified_level = st.level
                st.notified_at = st.last_notice_at = now
            elif st.level > st.notified_level:
                self._add(st, f"escalated:{Level(st.level).label}", now)
                st.notified_level = st.level
                st.last_notice_at = now
            elif (
                self.cfg.repeat_every > 0
                and st.cause is None
                and now - (st.last_notice_at or now) >= self.cfg.repeat_every
            ):
                st.reminders += 1
                self._add(st, f"reminder:{st.reminders}", now)
                st.last_notice_at = now
            if st.level < st.notified_level:
                st.notified_level = st.level  # better again: a later rise is news once more

    def _folded_quietly(self, st: AlertState) -> bool:
        """Whether a firing alert stays quiet because of its root cause (see the module's docstring)."""
        root = self.states.get(st.cause) if st.cause else None
        if root is None:
            return False
        if root.phase == "pending":
            return True  # wait: if the root fires, this joins its message
        return self._root_message_open(root) is None

    def _root_message_open(self, root: AlertState) -> str | None:
        """The outbox key of the root's firing message if it can still take folded alerts, else None."""
        key = f"{root.key}@{root.episode}:firing"
        if not root.notified or self.store is None:
            return None
        if any(queued[0] == key for queued in self._queue):
            return key
        try:
            rows = self.store.query(
                "SELECT 1 FROM outbox o WHERE idem_key = ? AND status = 'pending' AND NOT EXISTS "
                "(SELECT 1 FROM outbox p WHERE p.group_id = o.group_id AND p.parts_sent > 0)",
                (key,),
            )
        except StateError:
            return None
        return key if rows else None

    def _add(self, st: AlertState, kind: str, now: float) -> None:
        """Queue one notification about `st`; its key names the alert, the firing episode and the transition."""
        root = self.states.get(st.cause) if st.cause else None
        payload = {
            "kind": kind.split(":")[0],
            "key": st.key,
            "rule": st.rule,
            "subject": st.subject,
            "level": Level(st.level).label,
            "summary": st.summary,
            "detail": st.detail,
            "fired_at": st.fired_at,
            "began_at": st.began_at,
            "resolved_at": st.resolved_at,
            "at": now,
            "instance": self.config.general.instance,
            "flapping": st.flapping,
            "cause": st.cause,
            "cause_summary": root.summary if root else None,
        }
        self._dirty.add(st.key)
        join = self._root_message_open(root) if root is not None and kind == "firing" else None
        self._queue.append((f"{st.key}@{st.episode}:{kind}", kind.split(":")[0], payload, join))

    # ------------------------------------------------------------------------------------------ persistence

    def _forget(self, now: float) -> None:
        keep = self.cfg.keep_resolved
        for key in [
            k
            for k, st in self.states.items()
            if forgettable(st, now=now, keep_resolved=keep, th=self.thresholds(st.rule))
        ]:
            del self.states[key]
            self._dirty.discard(key)
            self._gone.add(key)

    def flush(self, now: float) -> None:
        """Write what is decided but not saved yet (the database refused it earlier); for a daemon stopping."""
        if self.persist:
            self._save(now)

    def _save(self, now: float) -> None:
        assert self.store is not None
        if not (self._unlogged or self._queue or self._dirty or self._gone):
            return  # no write lock taken for a snapshot that changed nothing
        queued = 0
        try:
            with self.store.transaction(fenced=self.deliver) as db:
                for transition, notified in self._unlogged:
                    self._log(db, transition, notified, now)
                # Rows that join another's message go last, after the message they join was written.
                for idem_key, kind, payload, join in sorted(self._queue, key=lambda q: q[3] is not None):
                    queued += enqueue(
                        db, idem_key, kind, payload, now=now, group_window=self.cfg.group_window, group_with=join
                    )
                # One batch, not a statement per alert: on the shared PostgreSQL each statement is a round trip.
                db.executemany(
                    "INSERT INTO alert_state (key, data, updated_at) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE "
                    "SET data = excluded.data, updated_at = excluded.updated_at",
                    [(key, self.states[key].to_json(), now) for key in self._dirty],
                )
                db.executemany("DELETE FROM alert_state WHERE key = ?", [(key,) for key in self._gone])
        except Fenced as exc:
            # Another daemon leads: it judges and queues from now on (the runtime stands this one down).
            if not self._write_failed:
                log.info("alert state not saved: %s", exc)
            self._write_failed = True
            return
        except StateError as exc:
            # Keep everything in memory and marked dirty: the next snapshot tries again.
            if not self._write_failed:
                log.error("cannot save alert state (retrying with each snapshot): %s", exc)
            self._write_failed = True
            return
        if self._write_failed:
            log.info("alert state saved again")
            self._write_failed = False
        self._queue.clear()
        self._unlogged.clear()
        self._dirty.clear()
        self._gone.clear()
        if queued and self.on_queued is not None:
            self.on_queued()

    @staticmethod
    def _log(db: Db, t: Transition, notified: bool, now: float) -> None:
        st = t.state
        db.execute(
            "INSERT INTO alert_log (at, key, rule, event, level, summary, notified) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (now, st.key, st.rule, t.event, Level(st.level).label, st.summary, int(notified)),
        )

    def _load(self) -> None:
        assert self.store is not None
        for row in self.store.query("SELECT data FROM alert_state"):
            try:
                st = AlertState.from_json(row["data"])
            except (TypeError, ValueError) as exc:
                log.warning("ignoring an unreadable saved alert: %s", exc)
                continue
            self.states[st.key] = st
        if self.states:
            firing = sum(st.phase == "firing" for st in self.states.values())
            log.info("restored %d alerts (%d firing) from the state store", len(self.states), firing)

    def _seed_restarts(self, store: Store) -> None:
        # Restarts recorded before this process started (per-minute samples) count towards a restart loop.
        prefix = series_key(_RESTARTS, "")
        try:
            rows = store.query(
                "SELECT series, ts, value FROM samples WHERE series LIKE ? AND ts >= ? ORDER BY series, ts",
                (prefix + "%", self.clock() - self.cfg.restart_loop.within - 120.0),
            )
        except StateError as exc:
            log.warning("cannot read restart history: %s", exc)
            return
        for row in rows:
            self.ctx.restarts.observe(row["series"][len(prefix) :], row["ts"], int(row["value"]))
