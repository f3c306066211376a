"""The notifier: drains the outbox into one Telegram chat, in order, paced, and never gives a message up silently.

- Pacing before Telegram has to say no: one message per `per_chat_interval`, at most `group_per_minute` a minute
  to a group. One chat is sent to serially (concurrent sends can arrive out of order).
- 429: wait `retry_after` and pause the chat. 5xx, HTML error pages and network errors: exponential back-off with
  jitter, capped at a minute so delivery resumes soon after an outage ends. Rows wait in the outbox meanwhile.
- "can't parse entities": the message is resent once as plain text.
- Chat gone (not found, blocked, kicked) or 401: sending stops, loudly (log, `opstui check`, a check fact the TUI
  shows); the notifications keep waiting for someone to fix the config.
- A group upgraded to a supergroup is followed to its new chat id, which is remembered in the state store.

Delivery is at-least-once: a network error after the request was written may hide a message Telegram delivered,
and we resend it (Telegram has no idempotency key); everything we can tell apart is sent exactly once. A message
Telegram accepted is marked sent before anything else goes out: while the state database refuses the mark (locked,
read-only, unreachable), the notifier retries it and sends nothing more, so nothing is sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from zoneinfo import ZoneInfo

from opstui.config.alerts import TelegramConfig
from opstui.errors import StateError
from opstui.model import CheckInfo, Level
from opstui.notify.outbox import Outbox, OutboxItem
from opstui.notify.render import render_alerts, split_lines, to_plain
from opstui.notify.telegram import Failure, TelegramBot, TelegramError
from opstui.state import Fenced, Store
from opstui.units import format_age

log = logging.getLogger("opstui.notify")

STATUS_KEY = "notify.telegram"
MIGRATED_KEY = "telegram.migrated."
BACKOFF_BASE = 2.0
BACKOFF_CAP = 60.0
STILL_FAILING_LOG_EVERY = 600.0
UNREACHABLE_WARNING_AFTER = 300.0
"""Telegram unreachable for longer than this is a warning in `opstui check` and the TUI."""
STATE_RETRY = 2.0
"""Seconds between attempts to use the state database while it refuses (to mark a sent message, to claim)."""


@dataclass(slots=True)
class DeliveryStatus:
    """How delivery is going, persisted so `opstui check` and the TUI can show it."""

    ok: bool = True
    problem: str | None = None
    permanent: bool = False
    since: float | None = None
    """When the current problem began."""
    chat_id: int | str | None = None
    last_sent_at: float | None = None


@dataclass(frozen=True, slots=True)
class _Accepted:
    """A message Telegram accepted whose rows are not marked yet (the state database refused the mark)."""

    rows: Sequence[OutboxItem]
    token: int
    parts_sent: int
    message_id: int | None
    sent_at: float | None
    """When its last part went, if it was the last."""


def read_status(store: Store) -> DeliveryStatus | None:
    raw = store.get_meta(STATUS_KEY)
    if not raw:
        return None
    try:
        return DeliveryStatus(**json.loads(raw))
    except (TypeError, ValueError):
        return None


def delivery_check(
    status: DeliveryStatus | None, waiting: int, oldest_due: float | None, *, now: float
) -> CheckInfo | None:
    """The fact the TUI, `opstui check` and the rules see about delivery; None when nothing was ever sent."""
    if status is None:
        return None
    waiting_note = f"; {waiting} notification{'s' if waiting != 1 else ''} waiting" if waiting else ""
    level = Level.OK
    detail = "Telegram delivery ok" + waiting_note
    if not status.ok and not status.permanent:
        # Within the grace period a failure is not yet an alert, but it is not "ok" either.
        detail = f"Telegram retrying: {status.problem}{waiting_note}"
    if status.permanent:
        level = Level.CRITICAL
        detail = f"Telegram refuses: {status.problem}{waiting_note}; fix [telegram] and restart"
    elif not status.ok and status.since is not None and now - status.since >= UNREACHABLE_WARNING_AFTER:
        level = Level.WARNING
        detail = f"Telegram failing for {format_age(now - status.since)}: {status.problem}{waiting_note}"
    elif waiting and oldest_due is not None and now - oldest_due >= UNREACHABLE_WARNING_AFTER:
        level = Level.WARNING
        detail = f"notifications waiting for {format_age(now - oldest_due)}{waiting_note}"
    return CheckInfo(key="telegram", name="telegram", kind="delivery", level=level, source="telegram", detail=detail)


class Notifier:
    """Sends what the outbox holds; `deliver_due()` is one pass, `run()` the loop the daemon keeps going.

    counters: `sent` and one count per `Failure` value, kept by the caller across notifiers (the daemon's
    /metrics).
    """

    def __init__(
        self,
        config: TelegramConfig,
        store: Store,
        *,
        tz: ZoneInfo,
        bot: TelegramBot | None = None,
        clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
        counters: Counter[str] | None = None,
    ) -> None:
        if config.chat_id is None:
            raise ValueError("a notifier needs telegram.chat_id")
        self.config = config
        self.store = store
        self.outbox = Outbox(store)
        self.tz = tz
        self.bot = bot or TelegramBot(config.token, api_base=config.api_base, timeout=config.timeout)
        self.clock = clock
        self.jitter = jitter
        self.counters: Counter[str] = Counter() if counters is None else counters
        self.in_doubt = 3 * config.timeout + 5.0
        """The longest one send can take (connect, write, read), with a margin: how long a new leader leaves
        rows alone that an old one claimed, so that one can still mark what it sent."""
        try:
            self.chat_id: int | str = self._followed(config.chat_id)
            self.status = read_status(store) or DeliveryStatus()
        except StateError as exc:  # the state database is down: start anyway, and find out later
            log.warning("notifier starting without its saved status: %s", exc)
            self.chat_id, self.status = config.chat_id, DeliveryStatus()
        # A permanent refusal recorded by an earlier run is retried once at start: the config may be fixed now.
        self.status.permanent = False
        self.status.chat_id = self.chat_id
        self._status_saved = False
        self._accepted: _Accepted | None = None
        self._backlog: tuple[int, float | None] = (0, None)
        self._state_problem: str | None = None
        self._stopped_by: TelegramError | None = None
        self._paused_until = 0.0
        self._failures = 0
        self._last_failure_log = 0.0
        self._sent_times: deque[float] = deque()
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------------------------------ the loop

    def wake(self) -> None:
        """Something new is in the outbox (called by the alert service after it queues)."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run(), name="notifier")

    async def stop(self, budget: float = 2.0) -> None:
        """Let a send under way finish (so it is marked and never repeated), then stop; cancel after `budget`."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=budget)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        await self.bot.aclose()

    async def run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                next_at = await self.deliver_due()
            except Exception:
                log.exception("notifier pass failed; retrying in 5s")
                next_at = self.clock() + 5.0
            if self._stopping:
                break
            delay = None if next_at is None else max(0.0, next_at - self.clock())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)

    async def deliver_due(self) -> float | None:
        """Send everything that is due and allowed now; returns when to look again (None: when woken).

        While the state database refuses (locked, read-only, unreachable) it says so once, sends nothing, and
        returns a time a few seconds ahead to try again.
        """
        try:
            next_at = await self._deliver_due()
        except Fenced as exc:
            if self._state_problem != str(exc):
                log.info("not sending notifications: %s", exc)
            self._state_problem = str(exc)
            return None
        except StateError as exc:
            if self._state_problem != str(exc):
                log.error("notifier cannot use the state database (retrying every %.0fs): %s", STATE_RETRY, exc)
            self._state_problem = str(exc)
            return self.clock() + STATE_RETRY
        if self._state_problem is not None:
            log.info("notifier uses the state database again")
            self._state_problem = None
        return next_at

    async def _deliver_due(self) -> float | None:
        while not self._stopping:
            if self._accepted is not None:
                self._mark(self._accepted)
            if self._stopped_by is not None:
                return None
            now = self.clock()
            if now < self._paused_until:
                return self._paused_until
            wait = self._pace_wait(now)
            group = self.outbox.next_group(now)
            if not group:
                return self.outbox.next_due_at()
            if wait > 0:
                return now + wait
            token, in_doubt_until = self.outbox.claim(group, now, in_doubt=self.in_doubt)
            if in_doubt_until is not None:
                log.info(
                    "another daemon claimed the next notification %.0fs ago and may still be sending it; "
                    "waiting until it can no longer be",
                    now - (in_doubt_until - self.in_doubt),
                )
                return in_doubt_until
            await self._send_group(group, token, now)
        return None

    # ------------------------------------------------------------------------------------------ one group

    def render(self, group: Sequence[OutboxItem]) -> list[str]:
        """The message texts (HTML) a group goes out as; the same rows always give the same texts."""
        if group[0].kind in ("report", "text"):
            lines = [line for item in group for line in item.payload["lines"]]
        else:
            lines = render_alerts([item.payload for item in group], tz=self.tz)
        chunks = split_lines(lines)
        if len(chunks) > 1:
            chunks = [f"({i}/{len(chunks)}) {chunk}" for i, chunk in enumerate(chunks, start=1)]
        return chunks

    async def _send_group(self, group: Sequence[OutboxItem], token: int, now: float) -> None:
        chunks = self.render(group)
        part = group[0].parts_sent
        if part >= len(chunks):
            self.outbox.sent(group, token, now)
            return
        try:
            message = await self._send_text(chunks[part])
        except TelegramError as exc:
            self._failed(group, token, exc)
            return
        sent_at = self.clock()
        self._sent_times.append(sent_at)
        self.counters["sent"] += 1
        raw_id = message.get("message_id")
        message_id = raw_id if isinstance(raw_id, int) else None
        self._accepted = _Accepted(group, token, part + 1, message_id, sent_at if part + 1 == len(chunks) else None)
        self._delivered(sent_at)
        self._mark(self._accepted)

    def _mark(self, accepted: _Accepted) -> None:
        """Record what Telegram accepted; raises StateError (and keeps it to retry) while the database refuses."""
        kept = self.outbox.part_sent(
            accepted.rows, accepted.token, accepted.parts_sent, accepted.message_id, sent_at=accepted.sent_at
        )
        self._accepted = None
        if kept < len(accepted.rows):
            log.error(
                "another daemon took over notifications this one had just sent before they were marked sent: "
                "it may send %d of them again",
                len(accepted.rows) - kept,
            )

    async def _send_text(self, text: str) -> dict[str, object]:
        try:
            return await self.bot.send_message(self.chat_id, text, thread_id=self.config.thread_id)
        except TelegramError as exc:
            if exc.failure is not Failure.BAD_MARKUP:
                raise
            log.warning("Telegram could not parse a message's markup (%s); resending it as plain text", exc.description)
            return await self.bot.send_message(
                self.chat_id, to_plain(text), html=False, thread_id=self.config.thread_id
            )

    # ------------------------------------------------------------------------------------------ outcomes

    def _delivered(self, now: float) -> None:
        if not self.status.ok:
            waited = format_age(now - self.status.since) if self.status.since else "a while"
            log.info("Telegram accepts messages again after %s", waited)
        self._failures = 0
        self._update(DeliveryStatus(ok=True, chat_id=self.chat_id, last_sent_at=now))

    def _failed(self, group: Sequence[OutboxItem], token: int, exc: TelegramError) -> None:
        now = self.clock()
        problem = str(exc)
        failure = exc.failure
        self.counters[failure.value] += 1
        if failure is Failure.MIGRATED and exc.migrate_to is not None:
            old, self.chat_id = self.chat_id, exc.migrate_to
            self.store.set_meta(f"{MIGRATED_KEY}{old}", str(exc.migrate_to))
            log.warning(
                "the Telegram group %s was upgraded to a supergroup; sending to its new id %s from now on "
                "(set telegram.chat_id = %s in the config)",
                old,
                exc.migrate_to,
                exc.migrate_to,
            )
            return
        self.outbox.attempted(group, token, problem)
        if failure is Failure.RATE_LIMITED:
            self._paused_until = now + (exc.retry_after or 1.0)
            log.warning("Telegram asks to slow down: pausing this chat for %ss", int(exc.retry_after or 1))
            self._update_problem(problem, now, permanent=False)
        elif failure is Failure.TRANSIENT:
            self._failures += 1
            delay = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (self._failures - 1))
            delay *= 0.5 + 0.5 * self.jitter()
            self._paused_until = now + delay
            if self._failures == 1 or now - self._last_failure_log >= STILL_FAILING_LOG_EVERY:
                self._last_failure_log = now
                waiting, _ = self.outbox.backlog()
                log.warning(
                    "%s; %d notification%s waiting, retrying with back-off%s",
                    problem,
                    waiting,
                    "" if waiting == 1 else "s",
                    " (it may have been delivered: a duplicate is possible)" if exc.maybe_delivered else "",
                )
            self._update_problem(problem, now, permanent=False)
        elif failure is Failure.REJECTED:
            # This message can never be sent as it is; keep it (marked failed) and go on with the next one.
            log.error("Telegram rejected a notification, which is kept in the outbox as failed: %s", problem)
            self.outbox.failed(group, token, problem, now)
        else:
            self._stopped_by = exc
            waiting, _ = self.outbox.backlog()
            log.error(
                "%s. Nothing more is sent until [telegram] is fixed and opstui restarted; %d notification%s wait "
                "in the outbox",
                problem,
                waiting,
                "" if waiting == 1 else "s",
            )
            self._update_problem(problem, now, permanent=True)

    def _update_problem(self, problem: str, now: float, *, permanent: bool) -> None:
        since = self.status.since if not self.status.ok and self.status.since is not None else now
        self._update(
            DeliveryStatus(
                ok=False,
                problem=problem,
                permanent=permanent,
                since=since,
                chat_id=self.chat_id,
                last_sent_at=self.status.last_sent_at,
            )
        )

    def _update(self, status: DeliveryStatus) -> None:
        changed = (status.ok, status.problem, status.permanent, status.chat_id) != (
            self.status.ok,
            self.status.problem,
            self.status.permanent,
            self.status.chat_id,
        )
        self.status = status
        if changed or not self._status_saved:
            # What `opstui check` and the TUI show; a database that refuses now gets it with the next change.
            try:
                self.store.set_meta(STATUS_KEY, json.dumps(asdict(status)))
                self._status_saved = True
            except StateError:
                self._status_saved = False

    @property
    def backlog(self) -> tuple[int, float | None]:
        """Notifications waiting and when the oldest was due, as `check()` last read them (each alert judgment)."""
        return self._backlog

    def check(self, *, refresh: bool = True) -> CheckInfo | None:
        """The delivery check; `refresh=False` reuses the backlog last read, for callers on the event loop (the
        heartbeat, /readyz) that must not wait for a shared database that stopped answering."""
        if refresh:
            with contextlib.suppress(StateError):  # else the backlog last seen; the database's own check says why
                self._backlog = self.outbox.backlog()
        waiting, oldest = self._backlog
        return delivery_check(self.status, waiting, oldest, now=self.clock())

    # ------------------------------------------------------------------------------------------ pacing

    def _pace_wait(self, now: float) -> float:
        wait = 0.0
        if self._sent_times:
            wait = self._sent_times[-1] + self.config.per_chat_interval - now
        while self._sent_times and self._sent_times[0] <= now - 60.0:
            self._sent_times.popleft()
        if self._is_group() and len(self._sent_times) >= self.config.group_per_minute:
            wait = max(wait, self._sent_times[0] + 60.0 - now)
        return max(0.0, wait)

    def _is_group(self) -> bool:
        chat = self.chat_id
        return isinstance(chat, str) or chat < 0

    def _followed(self, chat_id: int | str) -> int | str:
        """The configured chat, or the supergroup it was upgraded to (remembered from an earlier run)."""
        seen = {str(chat_id)}
        current: int | str = chat_id
        while (moved := self.store.get_meta(f"{MIGRATED_KEY}{current}")) is not None and moved not in seen:
            seen.add(moved)
            current = int(moved)
        return current
