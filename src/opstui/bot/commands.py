"""The bot's commands, in one registry: it feeds `setMyCommands`, /help and the authorization check.

`level` says who may run a command: "anyone" (/whoami, /help: a stranger needs their id to be let in),
"viewer" (reads: [bot] viewers and admins) or "admin" (changes something: [bot] admins only, and never in
read-only mode, which the actions guard enforces).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from opstui.actions.base import Target, rows_of
from opstui.alerts import active_silences, silence, unsilence
from opstui.alerts.silences import matches
from opstui.bot import views
from opstui.bot.confirm import MENU_SIZE, Option, Pending
from opstui.errors import ActionError, OpsError
from opstui.model import Snapshot
from opstui.notify.render import esc
from opstui.redact import redact

if TYPE_CHECKING:
    from opstui.bot.core import Asked, CommandBot

Level = Literal["anyone", "viewer", "admin"]
Handler = Callable[["CommandBot", "Asked"], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    help: str
    """The description Telegram shows in its command menu (and /help)."""
    level: Level
    run: Handler
    usage: str = ""
    listed: bool = True
    """Shown in Telegram's command menu (/start and /confirm are not: Telegram and the bot prompt for them)."""


async def _snapshot(bot: CommandBot, asked: Asked) -> Snapshot | None:
    snapshot = bot.snapshot()
    if snapshot is None:
        await bot.reply(asked, ["⏳ opstui has not read its sources yet; ask again in a few seconds."])
    return snapshot


def _word(asked: Asked, index: int) -> str | None:
    return asked.words[index] if len(asked.words) > index else None


async def status(bot: CommandBot, asked: Asked) -> None:
    if (snapshot := await _snapshot(bot, asked)) is not None:
        leader = f"{bot.config.general.instance}: {bot.leader()}"
        lines = views.status_lines(snapshot, config=bot.config.alerts, leader=leader, tz=bot.tz)
        await bot.reply(asked, lines)


async def health(bot: CommandBot, asked: Asked) -> None:
    if (snapshot := await _snapshot(bot, asked)) is not None:
        await bot.reply(asked, views.health_lines(snapshot, config=bot.config.alerts))


async def queue(bot: CommandBot, asked: Asked) -> None:
    if (snapshot := await _snapshot(bot, asked)) is not None:
        await bot.reply(asked, views.queue_lines(snapshot, config=bot.config.alerts, name=_word(asked, 0)))


async def logs(bot: CommandBot, asked: Asked) -> None:
    if (snapshot := await _snapshot(bot, asked)) is not None:
        await bot.reply(asked, views.logs_lines(snapshot, _word(asked, 0)))


def _row(bot: CommandBot, scope: str, word: str) -> dict[str, str]:
    """Name a row by what the person typed: its key if that is what they gave (`pm2:worker`), else its name."""
    snapshot = bot.snapshot()
    rows = rows_of(snapshot, scope) if snapshot is not None else ()
    if any(row.key == word for row in rows) and not any(row.name == word for row in rows):
        return {f"{scope}.key": word}
    return {f"{scope}.name": word}


async def restart(bot: CommandBot, asked: Asked) -> None:
    name = _word(asked, 0)
    await choose(bot, asked, "restart", _row(bot, "process", name) if name is not None else {})


async def recover(bot: CommandBot, asked: Asked) -> None:
    actions = bot.actions()
    if not asked.words:
        listing = views.actions_lines(actions.all(), read_only=actions.read_only)
        options = [Option(action.name, action.name, {}) for action in actions.all()]
        if not options:
            await bot.reply(asked, listing)
            return
        await bot.offer(asked, "Which action?", options, details=listing[1:])
        return
    name, *rest = asked.words
    try:
        action = actions.get(name)
    except ActionError:
        await bot.propose(asked, name, {})  # the guard refuses it, with a "did you mean", in the audit log
        return
    args: dict[str, str] = {}
    positional = []
    for word in rest:
        field, sep, value = word.partition("=")
        if sep and field:
            args[field] = value
        else:
            positional.append(word)
    slots = ([action.scope] if action.scope != "global" else []) + [p.name for p in action.parameters()]
    if len(positional) > len(slots):
        takes = " ".join(slot.upper() for slot in slots) or "nothing more"
        await bot.reply(asked, [f"<code>/recover {esc(action.name)}</code> takes {esc(takes)}; /recover lists all"])
        return
    for slot, word in zip(slots, positional, strict=False):
        args.update(_row(bot, slot, word) if slot == action.scope else {slot: word})
    await choose(bot, asked, action.name, args)


async def choose(
    bot: CommandBot, asked: Asked, name: str, args: Mapping[str, str], *, into: Pending | None = None
) -> None:
    """Plan `name` with `args`, or first ask, with buttons, what it still needs: the row it acts on, then each
    parameter that has choices (a script's mode). `into`: the menu a pick came from, whose message it reuses."""
    try:
        action = bot.actions().get(name)
    except ActionError:
        await bot.propose(asked, name, args, into=into)  # refused, with a "did you mean", in the audit log
        return
    scope = action.scope
    if scope != "global" and not any(key.startswith(f"{scope}.") for key in args):
        snapshot = bot.snapshot()
        rows = [row for row in rows_of(snapshot, scope) if action.offered_on(Target.of(row))] if snapshot else []
        if rows:
            names = [row.name for row in rows]
            options = [
                Option(row.name if names.count(row.name) == 1 else row.key, name, {**args, f"{scope}.key": row.key})
                for row in rows
            ]
            more = [f"<i>… and {len(rows) - MENU_SIZE} more: name one, e.g. /recover {esc(name)} NAME</i>"]
            details = more if len(rows) > MENU_SIZE else []
            await bot.offer(asked, f"{name}: which {scope}?", options, details=details, into=into)
            return
    for parameter in action.parameters():
        needed = parameter.when is None or args.get(parameter.when[0]) in parameter.when[1]
        if not needed or parameter.name in args:
            continue
        if parameter.choices:
            options = [Option(choice, name, {**args, parameter.name: choice}) for choice in parameter.choices]
            await bot.offer(asked, f"{name}: which {parameter.name}?", options, into=into)
        else:  # a free value (a company id) cannot be a button: say how to type it
            given = [value for key, value in args.items() if key.startswith(f"{scope}.")]
            given += [args[p.name] for p in action.parameters() if p.name in args]
            usage = " ".join([name, *given, parameter.name.upper()])
            lines = [f"✍️ {esc(name)} needs a {esc(parameter.name)} ({esc(parameter.help)}): send"]
            await bot.say(asked, [*lines, f"<code>/recover {esc(usage)}</code>"], into=into)
        return
    await bot.propose(asked, name, args, into=into)


async def confirm(bot: CommandBot, asked: Asked) -> None:
    if len(asked.words) < 2:
        await bot.reply(asked, ["Usage: <code>/confirm CODE PHRASE</code>, as the message asking for it says."])
        return
    await bot.confirm_typed(asked, asked.words[0], " ".join(asked.words[1:]))


async def _admitted(bot: CommandBot, asked: Asked) -> bool:
    """The actions guard's word on a change that is not an action (a silence): the allowlist and read-only mode."""
    try:
        bot.actions().guard.admit(asked.actor)
    except ActionError as exc:
        await bot.audit(asked.actor, f"/{asked.command}", reason=str(exc), chat_id=asked.chat_id, text=asked.text)
        await bot.reply(asked, [f"⛔ Refused: {esc(exc)}"])
        return False
    return True


async def silence_alert(bot: CommandBot, asked: Asked) -> None:
    if len(asked.words) < 2:
        snapshot = bot.snapshot()
        firing = [a for a in snapshot.alerts if a.state == "firing"] if snapshot is not None else []
        lines = ["Usage: <code>/silence ALERT DURATION [why]</code>, e.g. <code>/silence worker 2h deploy</code>"]
        lines += ["ALERT is an alert's key, rule or name, or a glob such as <code>queue_depth:*</code>"]
        if firing:
            lines += ["Firing now:", *(f"• <code>{esc(a.key)}</code> ({esc(a.subject or a.rule)})" for a in firing)]
        await bot.reply(asked, lines)
        return
    if not await _admitted(bot, asked):
        return
    pattern, duration, *why = asked.words
    try:
        made = await asyncio.to_thread(
            silence, bot.store, pattern, duration, by=str(asked.actor), comment=" ".join(why)
        )
    except OpsError as exc:
        await bot.reply(asked, [f"⛔ {esc(exc)}"])
        return
    snapshot = bot.snapshot()
    alerts = snapshot.alerts if snapshot is not None else ()
    muted = [
        a for a in alerts if a.state != "resolved" and matches(pattern, key=a.key, rule=a.rule, subject=a.subject or "")
    ]
    said = made.describe(bot.tz)
    await bot.audit(asked.actor, "/silence", reason=said, chat_id=asked.chat_id, text=asked.text, result="ok")
    note = f"it mutes {len(muted)} alert(s) firing or pending now" if muted else "no alert matches it right now"
    await bot.reply(asked, [f"🔕 {esc(said)}", f"<i>{esc(note)}; /unsilence {made.id} ends it</i>"])


async def silences(bot: CommandBot, asked: Asked) -> None:
    active = await asyncio.to_thread(active_silences, bot.store)
    lines = [f"🔕 {esc(s.describe(bot.tz))}" for s in active] or ["No silences are active."]
    await bot.reply(asked, lines)


async def unsilence_alert(bot: CommandBot, asked: Asked) -> None:
    which = _word(asked, 0)
    if which is None:
        await bot.reply(
            asked, ["Usage: <code>/unsilence ID</code> or <code>/unsilence PATTERN</code>; /silences lists them"]
        )
        return
    if not await _admitted(bot, asked):
        return
    ended = await asyncio.to_thread(unsilence, bot.store, int(which) if which.isdigit() else which)
    if not ended:
        await bot.reply(asked, [f"No active silence is {esc(which)}; /silences lists them."])
        return
    said = [f"ended {s.describe(bot.tz)}" for s in ended]
    await bot.audit(
        asked.actor, "/unsilence", reason="; ".join(said), chat_id=asked.chat_id, text=asked.text, result="ok"
    )
    await bot.reply(asked, [f"🔔 {esc(line)}" for line in said])


async def report(bot: CommandBot, asked: Asked) -> None:
    from opstui.report import build_report, report_timezone

    if (snapshot := await _snapshot(bot, asked)) is not None:
        tz = report_timezone(bot.config)
        await bot.reply(asked, await asyncio.to_thread(build_report, snapshot, bot.store, tz=tz))


async def test(bot: CommandBot, asked: Asked) -> None:
    from opstui.notify import send_test

    ok, answers = await send_test(bot.config, bot.store)
    head = "✅ A test message went to the alerts chat." if ok else "❌ The test message did not go out."
    await bot.reply(asked, [head, *(f"<i>{esc(redact(answer))}</i>" for answer in answers)])


async def whoami(bot: CommandBot, asked: Asked) -> None:
    role = bot.role(asked.user_id)
    name = f" ({esc(asked.who)})" if asked.username else ""
    lines = [
        f"🪪 Your Telegram user id is <code>{asked.user_id}</code>{name}; this chat is <code>{asked.chat_id}</code>."
    ]
    if role is None:
        lines.append(
            f"You may not use this bot yet: an admin adds <code>{asked.user_id}</code> to <code>[bot] viewers</code> "
            "(read-only commands) or <code>[bot] admins</code> (everything) in opstui's config."
        )
    else:
        lines.append(f"You are {'an admin' if role == 'admin' else 'a viewer'} of this bot.")
    await bot.reply(asked, lines)


async def help_(bot: CommandBot, asked: Asked) -> None:
    role = bot.role(asked.user_id)
    allowed = {"anyone"} | ({"viewer"} if role else set()) | ({"admin"} if role == "admin" else set())
    lines = [f"🤖 <b>opstui</b> on {esc(bot.config.general.instance)}"]
    for command in COMMANDS.values():
        if command.listed and command.level in allowed:
            usage = f" {command.usage}" if command.usage else ""
            lines.append(f"/{command.name}{esc(usage)} · {esc(command.help)}")
    if role is None:
        lines.append("You may not use the other commands yet: /whoami says how to be let in.")
    await bot.reply(asked, lines)


async def unknown_command(bot: CommandBot, asked: Asked) -> None:
    await bot.reply(asked, [f"Unknown command /{esc(asked.command)}; /help lists them."])


COMMANDS: dict[str, Command] = {
    c.name: c
    for c in (
        Command("status", "Processes, queues, lock, dispatch, alerts, who leads", "viewer", status),
        Command("health", "Health checks and failing sources", "viewer", health),
        Command("queue", "Queue depths (or one queue in detail)", "viewer", queue, "[NAME]"),
        Command("logs", "The last error lines of a log", "viewer", logs, "[NAME]"),
        Command("restart", "Restart a process (asks to confirm)", "admin", restart, "[PROCESS]"),
        Command("recover", "Run a recovery action (asks to confirm)", "admin", recover, "[ACTION] [MODE]"),
        Command("silence", "Mute an alert's notifications for a while", "admin", silence_alert, "ALERT DURATION"),
        Command("silences", "The active silences", "viewer", silences),
        Command("unsilence", "End a silence", "admin", unsilence_alert, "ID"),
        Command("report", "The daily report, now", "viewer", report),
        Command("test", "Send a test message to the alerts chat", "viewer", test),
        Command("whoami", "Your Telegram user id, to be let in", "anyone", whoami),
        Command("help", "What this bot can do", "anyone", help_),
        Command("start", "What this bot can do", "anyone", help_, listed=False),
        Command("confirm", "Confirm a dangerous action", "admin", confirm, "CODE PHRASE", listed=False),
    )
}
