"""`CommandBot`: long polling for Telegram commands, only while this daemon leads, and answering them.

Polling: `getUpdates` with a 30 s long poll (httpx waits 10 s longer), only `message` and `callback_query`
updates. Each update's offset is written to the state store before the update is handled, so a restart never
handles a command twice (a crash mid-command loses that one answer instead; the person asks again). When it
starts polling (and each time it becomes the leader again) the bot reads who it is (`getMe`), removes a
webhook (`deleteWebhook`, which would make polling impossible) and publishes its commands (`setMyCommands`).

Failures, never a crash loop: a 409 (another program polls this bot, or a webhook was set again) is logged and
shown as the bot's fact, and polling retries with a growing back-off; 5xx, HTML pages and network errors back
off exponentially with jitter, up to a minute; a 429 waits what Telegram asks; a 401 (the token was revoked)
stops polling and is a critical fact until the config is fixed.

High availability: `is_leader()` is asked before every poll and every second during one; a daemon that stops
leading cancels its poll at once and makes no Telegram call until it leads again (the new leader reads the
offset from the shared store).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

from opstui.actions import Actions, Actor, Confirmation, Plan, Run, RunResult
from opstui.actions.audit import Request
from opstui.bot.commands import COMMANDS, choose, unknown_command
from opstui.bot.confirm import Confirmations, Option, Pending, who
from opstui.bot.status import REFRESH_EVERY, BotStatus, State, bot_check, write_bot_status
from opstui.errors import ActionError, StateError
from opstui.model import CheckInfo, Snapshot
from opstui.notify.render import esc, split_lines, to_plain
from opstui.notify.telegram import Failure, TelegramBot, TelegramError
from opstui.state import Fenced
from opstui.units import format_age

if TYPE_CHECKING:
    from opstui.config import Config
    from opstui.engine import Engine
    from opstui.state import Store

log = logging.getLogger("opstui.bot")

OFFSET_KEY = "bot.offset"
ALLOWED_UPDATES = ("message", "callback_query")
BACKOFF_BASE = 1.0
BACKOFF_CAP = 60.0
CONFLICT_BACKOFF_BASE = 5.0
STILL_FAILING_LOG_EVERY = 600.0
LEADER_CHECK = 1.0
"""Seconds between looks at `is_leader()` while polling or standing by."""
SWEEP_EVERY = 1.0
PROGRESS_EVERY = 3.0
"""Seconds between edits of a running action's message with its latest output."""
TAIL_LINES = 15
TAIL_LINE_CHARS = 200
STRANGER_REPLY_EVERY = 60.0
"""A person who may not use the bot gets at most one answer per this many seconds (each try is audited)."""
RATE_LIMIT_WAIT_CAP = 30.0

Role = Literal["admin", "viewer"]


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str
    """For the audit log."""
    answer: str
    """For the person (HTML)."""
    stranger: bool = False
    """Not on any list: answered at most once per STRANGER_REPLY_EVERY, so nobody can make the bot spam."""


@dataclass(frozen=True, slots=True)
class Asked:
    """One command as a person sent it: who, in which chat, and the words after the command."""

    user_id: int
    username: str | None
    chat_id: int
    message_id: int
    thread_id: int | None
    sent_at: float
    command: str
    words: tuple[str, ...]
    text: str

    @property
    def actor(self) -> Actor:
        return Actor.telegram(self.user_id, self.username)

    @property
    def who(self) -> str:
        return who(self.actor)


class CommandBot:
    """The command bot of one daemon; `start()` it, `await stop()` it, and read `check()` for its fact.

    `actions` and `snapshot` are asked for each time (a reloaded daemon swaps them); `is_leader` says whether
    this daemon may poll (default: always); `leader` says how this daemon leads, for /status ("leading (token
    7)"; `Leadership.describe`).
    """

    def __init__(
        self,
        config: Config,
        *,
        store: Store,
        actions: Callable[[], Actions],
        snapshot: Callable[[], Snapshot | None],
        is_leader: Callable[[], bool] | None = None,
        leader: Callable[[], str] | None = None,
        api: TelegramBot | None = None,
        owns_actions: bool = False,
        clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self.settings = config.bot
        self.store = store
        self.actions = actions
        self.owns_actions = owns_actions
        """The bot made its `Actions` itself, so it cancels their runs when it stops."""
        self.snapshot = snapshot
        self.follows_leadership = is_leader is not None
        self.is_leader: Callable[[], bool] = is_leader or (lambda: True)
        self.leader: Callable[[], str] = leader or (lambda: "leading (a single daemon)")
        telegram = config.telegram
        self.api = api or TelegramBot(telegram.token, api_base=telegram.api_base, timeout=telegram.timeout)
        self.clock = clock
        self.jitter = jitter
        self.tz = ZoneInfo(config.general.timezone)
        self.confirmations = Confirmations(telegram.token, ttl=self.settings.confirm_within, clock=clock)
        self.username: str | None = None
        self.offset: int | None = None
        self.status = BotStatus()
        self._written: tuple[State, str | None, float] | None = None
        self._ready = False
        self._failures = 0
        self._last_failure_log = 0.0
        self._strangers: dict[int, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopped = asyncio.Event()
        self._leadership = asyncio.Event()
        self._engine: Engine | None = None

    # ------------------------------------------------------------------------------------------ lifecycle

    def attach(self, engine: Engine) -> None:
        """Put the bot's fact into the engine's snapshots, ahead of the alert rules (until `stop`); a reloaded
        daemon attaches it to its new engine."""
        self._detach()
        engine.processors.insert(0, self.add_status)
        self._engine = engine

    def _detach(self) -> None:
        if self._engine is not None and self.add_status in self._engine.processors:
            self._engine.processors.remove(self.add_status)
        self._engine = None

    def reconfigure(self, config: Config) -> bool:
        """Take a reloaded config's [bot] lists and settings, keeping the poll, the waiting confirmations and
        the runs it follows. False when that cannot be done in place (the bot was turned off, or [telegram]
        token or api_base changed): then stop this bot and start a new one."""
        old, new = self.config.telegram, config.telegram
        if not config.bot.enabled or (new.token, new.api_base) != (old.token, old.api_base):
            return False
        self.config, self.settings = config, config.bot
        self.tz = ZoneInfo(config.general.timezone)
        self.confirmations.ttl = config.bot.confirm_within
        return True

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self.run(), name="telegram bot")
        self._task.add_done_callback(self._polling_ended)
        self._sweeper = loop.create_task(self._sweep(), name="telegram bot confirmations")

    async def stop(self, budget: float = 2.0) -> None:
        """Stop polling at once (no new command is taken), then give the runs it follows up to `budget` seconds
        to end, so their messages say how they ended (a daemon that drains its actions meanwhile should run
        this beside the draining); confirmations still waiting are recorded as declined. Runs of actions the
        bot made itself (`owns_actions`) are stopped."""
        self._stopped.set()
        deadline = time.monotonic() + budget
        started = [task for task in (self._task, self._sweeper) if task is not None]
        for task in started:
            task.cancel()
        if started:
            await asyncio.wait(started)
        if self.owns_actions:  # its runs are stopped now (their messages say so), within the budget
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.actions().close(), max(0.1, deadline - time.monotonic()))
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=max(0.1, deadline - time.monotonic()))
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks))
        for pending in self.confirmations.waiting():
            self.confirmations.take(pending, "abandoned")
            if pending.plan is not None:
                with contextlib.suppress(ActionError, StateError):
                    await self.actions().decline(pending.plan, "opstui stopped before it was confirmed in Telegram")
        self._detach()
        await self.api.aclose()

    def _polling_ended(self, task: asyncio.Task[None]) -> None:
        # `run` survives every error of one poll; should the back-off itself fail, say so where people look
        # instead of leaving a bot that answers nothing and a traceback only when the task is collected.
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("the Telegram bot stopped polling after an error inside opstui (restart opstui)", exc_info=exc)

    async def run(self) -> None:
        """Poll and answer until stopped; returns earlier only when Telegram refuses the token."""
        # The loop asks `_stopped` itself: `stop()` cancels this task, but on Python 3.11 `asyncio.wait_for` drops a
        # cancellation that arrives just as the wait it guards ends (CPython gh-86296), and a back-off wait ends at
        # once when `_stopped` is set, so a cancelled bot would otherwise keep calling Telegram.
        while not self._stopped.is_set():
            try:
                if await self._poll_and_answer():
                    return
            except Exception as exc:  # a state database that refuses, a bug: never the end of polling
                log.exception("the Telegram bot's polling failed")
                await self._failed(TelegramError(f"polling failed inside opstui: {exc}", failure=Failure.TRANSIENT))

    async def _poll_and_answer(self) -> bool:
        """One long poll and the answers to what it brought; True when polling must stop for good."""
        if not self.is_leader():
            await self._stand_by()
            return False
        try:
            if not self._ready:
                await self._prepare()
            updates = await self._poll()
        except TelegramError as exc:
            return await self._failed(exc)
        if updates is not None:
            await self._polled()
            for update in updates:
                await self._handle(update)
        return False

    # ------------------------------------------------------------------------------------------ polling

    async def _stand_by(self) -> None:
        if self._ready:
            log.info("this daemon no longer leads: the Telegram bot stops polling")
        self._ready = False
        self.offset = None  # the leader moves it on meanwhile; read it again when leading
        await self._until_leading(True)

    async def leadership_changed(self, leading: bool) -> None:
        """Look at `is_leader()` again now (`leadership.on_change(bot.leadership_changed)`); without this the
        bot notices a change within `LEADER_CHECK` seconds."""
        self._leadership.set()

    async def _until_leading(self, leading: bool) -> None:
        while self.is_leader() is not leading:
            self._leadership.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._leadership.wait(), LEADER_CHECK)

    async def _prepare(self) -> None:
        me = await self.api.call("getMe")
        username = me.get("username") if isinstance(me, dict) else None
        self.username = username if isinstance(username, str) and username else None
        await self.api.call("deleteWebhook", drop_pending_updates=False)
        listed = [{"command": c.name, "description": c.help} for c in COMMANDS.values() if c.listed]
        try:
            await self.api.call("setMyCommands", commands=listed)
        except TelegramError as exc:
            if exc.failure is not Failure.REJECTED:
                raise
            log.warning("Telegram refused the bot's command list (commands still work): %s", exc)
        if self.offset is None:
            stored = await asyncio.to_thread(self.store.get_meta, OFFSET_KEY)
            self.offset = int(stored) if stored and stored.isdigit() else None
        self._ready = True
        self.status.username = self.username
        log.info("Telegram bot @%s polls for commands", self.username or "?")
        if not self.settings.admins and not self.settings.viewers:
            log.warning(
                "[bot] admins and viewers are empty: nobody may use the bot yet; send it /whoami and add the "
                "user id it answers to [bot] admins"
            )

    async def _poll(self) -> list[dict[str, Any]] | None:
        """One long poll; None when this daemon stopped leading meanwhile (what came is left to the leader)."""
        timeout = self.settings.poll_timeout
        call = self.api.call(
            "getUpdates",
            offset=self.offset,
            timeout=int(timeout),
            allowed_updates=list(ALLOWED_UPDATES),
            read_timeout=timeout,
        )
        if not self.follows_leadership:
            result = await call
        else:
            poll = asyncio.ensure_future(call)
            lost = asyncio.ensure_future(self._until_leading(False))
            try:
                await asyncio.wait({poll, lost}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (poll, lost):
                    task.cancel()
                await asyncio.wait({poll, lost})
            if poll.cancelled() or not self.is_leader():
                return None
            result = poll.result()
        return [u for u in result if isinstance(u, dict)] if isinstance(result, list) else []

    async def _polled(self) -> None:
        if self._failures:
            log.info("Telegram answers the bot's polls again")
        self._failures = 0
        await self._set_status("polling", None)

    async def _failed(self, exc: TelegramError) -> bool:
        """Say what went wrong, once, and wait before polling again; True when polling must stop for good."""
        now = self.clock()
        self._failures += 1
        if exc.failure is Failure.UNAUTHORIZED:
            log.error(
                "Telegram refuses the bot token (%s): the bot stops polling until [telegram] token is fixed and "
                "opstui restarted",
                exc,
            )
            await self._set_status("unauthorized", str(exc))
            return True
        base = BACKOFF_BASE
        if exc.status == 409:
            base = CONFLICT_BACKOFF_BASE
            if "webhook" in (exc.description or "").lower():
                problem = (
                    "a webhook was set for this bot, so it cannot be polled: something else uses this token "
                    "(opstui removes a webhook only when it starts); give opstui its own bot"
                )
            else:
                problem = (
                    "another program polls this bot's updates (409 conflict): only one may; stop the other "
                    "instance, or give opstui its own bot from @BotFather"
                )
            state: State = "conflict"
        else:
            problem, state = str(exc), "unreachable"
        if exc.failure is Failure.RATE_LIMITED:
            delay = min(exc.retry_after or BACKOFF_BASE, BACKOFF_CAP)
        else:
            # The exponent stops growing once the cap is reached: after ~1,000 failures (17 h of outage at the cap)
            # 2 ** failures no longer fits in a float.
            doublings = min(self._failures - 1, math.ceil(math.log2(BACKOFF_CAP / base)))
            delay = min(BACKOFF_CAP, base * 2**doublings) * (0.5 + 0.5 * self.jitter())
        changed = (state, problem) != (self.status.state, self.status.problem)
        if changed or now - self._last_failure_log >= STILL_FAILING_LOG_EVERY:
            self._last_failure_log = now
            log.warning("Telegram bot: %s; polling again in %.0fs", problem, delay)
        await self._set_status(state, problem)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), delay)
        return False

    # ------------------------------------------------------------------------------------------ status

    async def _set_status(self, state: State, problem: str | None) -> None:
        now = self.clock()
        if (state, problem) != (self.status.state, self.status.problem):
            self.status.since = now
        self.status.state, self.status.problem = state, problem
        self.status.updated_at = now
        written = self._written
        if written is None or written[:2] != (state, problem) or now - written[2] >= REFRESH_EVERY:
            try:  # off the event loop: with high availability the store is a PostgreSQL server away
                await asyncio.to_thread(write_bot_status, self.store, self.status)
                self._written = (state, problem, now)
            except StateError as exc:
                log.warning("cannot record the bot's status: %s", exc)

    def check(self) -> CheckInfo | None:
        """The bot's fact for this daemon's alert rules; nothing while another daemon leads (it has its own)."""
        if not self.is_leader():
            return None
        return bot_check(self.status, now=self.clock())

    def add_status(self, snapshot: Snapshot) -> Snapshot:
        """An engine processor (put it before alerting): the bot's fact joins the snapshot's checks."""
        check = self.check()
        return snapshot if check is None else snapshot.replace(checks=(*snapshot.checks, check))

    # ------------------------------------------------------------------------------------------ updates

    async def _handle(self, update: dict[str, Any]) -> None:
        update_id = update.get("update_id")
        if not isinstance(update_id, int) or (self.offset is not None and update_id < self.offset):
            return
        self.offset = update_id + 1
        try:
            # Fenced: a daemon that no longer leads (paused, cut off) must not handle a command the new leader
            # may handle too.
            await asyncio.to_thread(partial(self.store.set_meta, OFFSET_KEY, str(self.offset), fenced=True))
        except Fenced as exc:
            log.info("not handling a Telegram update: %s", exc)
            return
        except StateError as exc:
            log.error("cannot remember which Telegram updates were handled (a restart may repeat one): %s", exc)
        try:
            message, query = update.get("message"), update.get("callback_query")
            if isinstance(message, dict):
                await self._on_message(message)
            elif isinstance(query, dict):
                await self._on_callback(query)
        except TelegramError as exc:
            log.warning("could not answer a Telegram update: %s", exc)
        except StateError as exc:
            log.error("a Telegram command could not use the state database: %s", exc)
        except Exception:
            log.exception("the Telegram bot failed on an update; it goes on with the next")

    def parse(self, message: dict[str, Any]) -> Asked | None:
        """The command in a message, or None (not a command, from a bot or a channel, or for another bot)."""
        text, sender, chat = message.get("text"), message.get("from"), message.get("chat")
        if not isinstance(text, str) or not text.startswith("/") or not isinstance(sender, dict):
            return None
        if sender.get("is_bot") or not isinstance(sender.get("id"), int) or not isinstance(chat, dict):
            return None
        head, *words = text.split()
        name, _, mention = head[1:].partition("@")
        if mention and self.username and mention.lower() != self.username.lower():
            return None
        thread = message.get("message_thread_id")
        return Asked(
            user_id=sender["id"],
            username=sender.get("username"),
            chat_id=int(chat.get("id", 0)),
            message_id=int(message.get("message_id", 0)),
            thread_id=thread if isinstance(thread, int) else None,
            sent_at=float(message.get("date") or 0),
            command=name.lower(),
            words=tuple(words),
            text=text,
        )

    async def _on_message(self, message: dict[str, Any]) -> None:
        asked = self.parse(message)
        if asked is None:
            return
        command = COMMANDS.get(asked.command)
        refusal = self.refusal(asked, command.level if command is not None else "viewer")
        if refusal is not None:
            await self.refuse(asked, refusal)
            return
        if command is None:
            await unknown_command(self, asked)
            return
        if command.level != "anyone":
            self.status.last_command_at = self.clock()
        age = self.clock() - asked.sent_at
        if command.level == "admin" and age > self.settings.stale_after:
            reason = (
                f"sent {format_age(age)} ago, while opstui's bot was not running; nothing was done. "
                "Send it again if you still want it."
            )
            await self.audit(asked.actor, f"/{asked.command}", reason=reason, chat_id=asked.chat_id, text=asked.text)
            await self.reply(asked, [f"⏳ /{esc(asked.command)} was {esc(reason)}"])
            return
        await command.run(self, asked)

    def role(self, user_id: int) -> Role | None:
        if user_id in self.settings.admins:
            return "admin"
        return "viewer" if user_id in self.settings.viewers else None

    def refusal(self, asked: Asked, level: str) -> Refusal | None:
        """Why this person may not run a command of this level in this chat; None when they may."""
        if level == "anyone":
            return None
        if self.settings.chats and asked.chat_id not in self.settings.chats:
            return Refusal(f"chat {asked.chat_id} is not in [bot] chats", "⛔ opstui takes no commands in this chat.")
        role = self.role(asked.user_id)
        if role is None:
            answer = (
                f"⛔ You may not use this bot. Your Telegram user id is <code>{asked.user_id}</code>: an admin "
                "can add it to [bot] viewers (read-only commands) or [bot] admins in opstui's config."
            )
            return Refusal("not in [bot] admins or viewers", answer, stranger=True)
        if level == "admin" and role != "admin":
            return Refusal(
                "a viewer: this command changes something, and only [bot] admins may run it",
                f"⛔ /{esc(asked.command)} changes something: only [bot] admins may run it (you are a viewer).",
            )
        return None

    async def refuse(self, asked: Asked, refusal: Refusal) -> None:
        """Write the refusal to the audit log (always) and say no (to a stranger at most once a minute)."""
        await self.audit(
            asked.actor, f"/{asked.command}", reason=refusal.reason, chat_id=asked.chat_id, text=asked.text
        )
        if refusal.stranger:
            now = self.clock()
            self._strangers = {user: at for user, at in self._strangers.items() if now - at < STRANGER_REPLY_EVERY}
            if asked.user_id in self._strangers:
                return
            self._strangers[asked.user_id] = now
        await self.reply(asked, [refusal.answer])

    async def audit(
        self,
        actor: Actor,
        action: str,
        *,
        reason: str | None,
        chat_id: int | None,
        text: str | None = None,
        result: str = "refused",
    ) -> None:
        """One entry in the actions' audit log (kind "bot"): the one log of who did or tried what."""
        request = Request(
            actor, action, "bot", f"chat {chat_id}" if chat_id is not None else None, (text,) if text else ()
        )
        try:
            await asyncio.to_thread(self.actions().audit.record, request, result=result, reason=reason)
        except StateError as exc:
            log.error("could not write to the audit log: %s", exc)

    # ------------------------------------------------------------------------------------------ actions

    async def propose(self, asked: Asked, name: str, args: Mapping[str, str], *, into: Pending | None = None) -> None:
        """Plan an action for the person who asked and show what will run with Confirm / Cancel (dangerous:
        the /confirm code); refusals come from the guard, already audited. `into`: the menu it was picked
        from, whose message becomes the confirmation."""
        actions = self.actions()
        try:
            plan = await actions.plan(name, actor=asked.actor, args=args)
        except ActionError as exc:
            await self.say(asked, [f"⛔ Refused: {esc(exc)}"], into=into)
            return
        target = plan.target
        title = f"<b>{esc(plan.action.name)}</b>"
        if target is not None:
            title += f" · {esc(target.scope)} <b>{esc(target.name)}</b>"
        params = [v for k, v in plan.args.items() if "." not in k]
        if params:
            title += f" {esc(' '.join(params))}"
        shown = [f"<code>{esc(line)}</code>" for line in plan.shown]
        pending = self.confirmations.add(plan, chat_id=asked.chat_id, title=title)
        if plan.requirement.kind == "none":
            self.confirmations.take(pending, "run at once")
            lines = [f"▶️ {title}", f"<i>asked by {esc(asked.who)}</i>", *shown]
            pending.message_id = await self.say(asked, lines, into=into)
            await self._start(pending, plan, plan.confirmation("runs without asking (confirm = false), from Telegram"))
            return
        ttl = int(self.settings.confirm_within)
        lines = [f"❓ {title}", f"<i>asked by {esc(asked.who)}</i>", "Will run:", *shown]
        cancel = self._button("✖ Cancel", "n", pending)
        if plan.requirement.kind == "typed":
            phrase = plan.requirement.phrase or ""
            lines += [
                f"⚠️ <b>Dangerous.</b> No button runs it: to run it, send "
                f"<code>/confirm {pending.code} {esc(phrase)}</code> within {ttl} s."
            ]
            keyboard = [[cancel]]
        else:
            lines.append(f"Confirm within {ttl} s.")
            keyboard = [[self._button("✅ Confirm", "y", pending), cancel]]
        pending.message_id = await self.say(asked, lines, markup={"inline_keyboard": keyboard}, into=into)

    async def offer(
        self,
        asked: Asked,
        question: str,
        options: list[Option],
        *,
        details: Sequence[str] = (),
        into: Pending | None = None,
    ) -> None:
        """A menu (which process, which mode): a button per option, two a row, for the asker only, within
        `confirm_within`; a pick leads to `commands.choose` (the next question, or the plan to confirm).
        `details`: HTML lines shown under the question."""
        pending = self.confirmations.menu(
            options, asked=asked, actor=asked.actor, chat_id=asked.chat_id, title=esc(question)
        )
        buttons = [self._button(option.label, str(i), pending) for i, option in enumerate(pending.options)]
        keyboard = [buttons[i : i + 2] for i in range(0, len(buttons), 2)] + [[self._button("✖ Cancel", "n", pending)]]
        lines = [f"❓ {pending.title}", f"<i>asked by {esc(asked.who)}</i>", *details]
        pending.message_id = await self.say(asked, lines, markup={"inline_keyboard": keyboard}, into=into)

    def _button(self, text: str, verb: str, pending: Pending) -> dict[str, str]:
        return {"text": text, "callback_data": self.confirmations.button(verb, pending)}

    async def confirm_typed(self, asked: Asked, code: str, phrase: str) -> None:
        """`/confirm CODE PHRASE`: the typed confirmation of a dangerous action."""
        found = self.confirmations.by_code(code, user_id=asked.user_id, chat_id=asked.chat_id)
        if isinstance(found, str):
            await self.audit(asked.actor, "/confirm", reason=found, chat_id=asked.chat_id, text=asked.text)
            await self.reply(asked, [f"⛔ {esc(found)}"])
            return
        assert found.plan is not None
        await self._start(
            found, found.plan, found.plan.confirmation("typed its name in Telegram (/confirm)", typed=phrase)
        )

    async def _on_callback(self, query: dict[str, Any]) -> None:
        query_id = str(query.get("id", ""))
        sender, message = _dict(query.get("from")), _dict(query.get("message"))
        user_id = _int(sender.get("id")) or 0
        chat_id, message_id = _int(_dict(message.get("chat")).get("id")), _int(message.get("message_id"))
        actor = Actor.telegram(user_id, sender.get("username"))
        decision = self.confirmations.decide(
            str(query.get("data") or ""), user_id=user_id, chat_id=chat_id, message_id=message_id
        )
        if decision.refusal is not None:
            await self.answer(query_id, decision.refusal, alert=True)
            await self.audit(
                actor, decision.action or "(button)", reason=f"button: {decision.refusal}", chat_id=chat_id
            )
            if decision.expired and decision.pending is not None:
                await self._expired(decision.pending)
            return
        pending = decision.pending
        assert pending is not None and decision.verb is not None
        if decision.verb == "n":
            await self.answer(query_id, "Cancelled: nothing runs")
            if pending.plan is not None:
                with contextlib.suppress(ActionError):
                    await self.actions().decline(pending.plan, "pressed Cancel in Telegram")
            await self.edit(pending, [f"✖ {pending.title}", f"<i>cancelled by {esc(who(actor))}: nothing ran</i>"])
        elif pending.plan is not None:
            await self.answer(query_id, f"Running {pending.plan.action.name}…")
            await self._start(pending, pending.plan, pending.plan.confirmation("pressed Confirm in Telegram"))
        else:
            option = pending.options[int(decision.verb)]
            await self.answer(query_id, option.label)
            await choose(self, pending.asked, option.action, option.args, into=pending)

    async def _start(self, pending: Pending, plan: Plan, confirmation: Confirmation) -> None:
        confirmed_by = esc(who(plan.actor))
        try:
            run = await self.actions().start(plan, confirmation)
        except ActionError as exc:
            await self.edit(pending, [f"⛔ {pending.title}", f"Refused: {esc(exc)}"])
            return
        # Followed from now on, so a bot that stops before the first edit still says how the run ended.
        self._spawn(self._follow(pending, run, confirmed_by))

    async def _follow(self, pending: Pending, run: Run, confirmed_by: str) -> None:
        """Edit the message with the latest output while the action runs, then with its result."""
        done = asyncio.ensure_future(run.wait())
        seen = 0
        try:
            await self.edit(pending, [f"▶️ {pending.title}", f"<i>running, confirmed by {confirmed_by}</i>"])
            while not done.done():
                await asyncio.wait({done}, timeout=PROGRESS_EVERY)
                count = len(run.lines) + run.dropped
                if not done.done() and count != seen:
                    seen = count
                    lines = [f"▶️ {pending.title}", f"<i>running, confirmed by {confirmed_by}</i>", *_tail(run)]
                    await self.edit(pending, lines)
        except asyncio.CancelledError:  # the bot stops while the run goes on: the message must not say "running"
            done.cancel()
            lines = [
                f"⏹ {pending.title}",
                "<i>opstui's bot stopped while it ran: <code>opstui audit</code> has how it ended</i>",
            ]
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.edit(pending, lines), 1.0)
            raise
        result: RunResult = done.result()
        icon = "✅" if result.ok else "❌"
        await self.edit(
            pending,
            [f"{icon} {pending.title}", esc(result.summary), f"<i>confirmed by {confirmed_by}</i>", *_tail(run)],
        )

    async def _expired(self, pending: Pending) -> None:
        ttl = int(self.settings.confirm_within)
        if pending.plan is None:
            await self.edit(pending, [f"⌛ {pending.title}", f"<i>nothing was chosen within {ttl} s</i>"])
            return
        with contextlib.suppress(ActionError):
            await self.actions().decline(pending.plan, f"not confirmed within {ttl} s in Telegram")
        await self.edit(pending, [f"⌛ {pending.title}", f"<i>not confirmed within {ttl} s: nothing ran</i>"])

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_EVERY)
            for pending in self.confirmations.expired():
                try:
                    await self._expired(pending)
                except Exception:
                    log.exception("could not mark an expired confirmation of %s", pending.action)

    def _spawn(self, work: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("the Telegram bot could not follow an action run: %s", task.exception())

    # ------------------------------------------------------------------------------------------ talking

    async def reply(self, asked: Asked, lines: Sequence[str], *, markup: dict[str, Any] | None = None) -> int | None:
        """Answer in the person's chat (and topic), split into messages under Telegram's limit; the keyboard
        goes on the last. Returns the last message's id."""
        chunks = split_lines(list(lines))
        if len(chunks) > 1:
            chunks = [f"({i}/{len(chunks)}) {chunk}" for i, chunk in enumerate(chunks, start=1)]
        message_id: int | None = None
        for index, chunk in enumerate(chunks):
            last = index == len(chunks) - 1
            sent = await self._call(
                "sendMessage",
                chat_id=asked.chat_id,
                text=chunk,
                message_thread_id=asked.thread_id,
                reply_parameters={"message_id": asked.message_id, "allow_sending_without_reply": True}
                if index == 0
                else None,
                reply_markup=markup if last else None,
            )
            if isinstance(sent, dict) and isinstance(sent.get("message_id"), int):
                message_id = sent["message_id"]
        return message_id

    async def edit(self, pending: Pending, lines: Sequence[str], *, markup: dict[str, Any] | None = None) -> None:
        """Replace the message that asked (its keyboard goes away unless `markup` gives another)."""
        if pending.message_id is None:
            return
        text = "\n".join(lines)
        try:
            await self._call(
                "editMessageText",
                chat_id=pending.chat_id,
                message_id=pending.message_id,
                text=text,
                reply_markup=markup,
            )
        except TelegramError as exc:
            log.warning("could not update the bot's message about %s: %s", pending.action, exc)

    async def say(
        self, asked: Asked, lines: Sequence[str], *, markup: dict[str, Any] | None = None, into: Pending | None = None
    ) -> int | None:
        """Answer the command, or turn the menu message `into` into the answer; the message's id."""
        if into is None:
            return await self.reply(asked, lines, markup=markup)
        await self.edit(into, lines, markup=markup)
        return into.message_id

    async def answer(self, query_id: str, text: str, *, alert: bool = False) -> None:
        """Answer a button press (the client shows a spinner until then); a late answer is not an error."""
        try:
            await self.api.call("answerCallbackQuery", callback_query_id=query_id, text=text[:200], show_alert=alert)
        except TelegramError as exc:
            log.info("could not answer a button press: %s", exc)

    async def _call(self, method: str, **params: Any) -> Any:
        """sendMessage / editMessageText in HTML: once more as plain text if Telegram cannot parse the markup,
        once more after a 429's wait; an edit that changes nothing is not an error."""
        params = {**params, "parse_mode": "HTML", "link_preview_options": {"is_disabled": True}}
        for attempt in range(3):
            try:
                return await self.api.call(method, **params)
            except TelegramError as exc:
                if "message is not modified" in (exc.description or ""):
                    return None
                if exc.failure is Failure.BAD_MARKUP and "parse_mode" in params:
                    log.warning("Telegram could not parse the bot's markup (%s); sending plain text", exc.description)
                    params = {**params, "text": to_plain(params["text"]), "parse_mode": None}
                elif exc.failure is Failure.RATE_LIMITED and attempt < 2:
                    await asyncio.sleep(min(exc.retry_after or 1.0, RATE_LIMIT_WAIT_CAP))
                else:
                    raise
        return None


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _tail(run: Run) -> list[str]:
    """The last lines of a run's output as one <pre> block (stderr lines start with `! `)."""
    tail = run.tail(TAIL_LINES)
    if not tail:
        return []
    cut = [line if len(line) <= TAIL_LINE_CHARS else line[: TAIL_LINE_CHARS - 1] + "…" for line in tail]
    return [f"<pre>{esc(chr(10).join(cut))}</pre>"]
