"""Notifications: the Telegram Bot API client, the persistent outbox, and the notifier that drains it.

Alerts and daily reports go through the outbox (`opstui.notify.outbox`) and the `Notifier`; a person at a
terminal (`opstui notify test`, `opstui report --send`) gets `send_now`, which sends at once and says exactly
what Telegram answered.
"""

from __future__ import annotations

from collections.abc import Sequence

from opstui.config import Config
from opstui.notify.outbox import Outbox
from opstui.notify.render import esc, split_lines, to_plain
from opstui.notify.sender import MIGRATED_KEY, Notifier, read_status
from opstui.notify.telegram import Failure, TelegramBot, TelegramError
from opstui.state import Store

__all__ = [
    "Failure",
    "Notifier",
    "Outbox",
    "TelegramBot",
    "TelegramError",
    "read_status",
    "send_now",
    "send_test",
]

HINTS = {
    Failure.UNAUTHORIZED: "the token is wrong or was revoked (get it from @BotFather), or api_base is not a Bot API",
    Failure.CHAT_GONE: "the bot cannot write to this chat: add it to the group, or open the bot and press Start",
    Failure.TRANSIENT: "Telegram could not be reached; alerts wait in the outbox and go out when it can",
    Failure.RATE_LIMITED: "Telegram asks to slow down; alerts wait and go out in order",
}


async def send_now(config: Config, store: Store | None, lines: Sequence[str]) -> tuple[bool, list[str]]:
    """Send a message straight away (no outbox) and return whether it went, and what Telegram answered.

    Follows a group's upgrade to a supergroup (and remembers it), and retries once as plain text if Telegram
    cannot parse the markup.
    """
    telegram = config.telegram
    if not telegram.configured or telegram.chat_id is None:
        return False, ["Telegram is not configured: set [telegram] token and chat_id (see config.example.toml)"]
    chat: int | str = telegram.chat_id
    if store is not None:
        while (moved := store.get_meta(f"{MIGRATED_KEY}{chat}")) is not None:
            chat = int(moved)
    bot = TelegramBot(telegram.token, api_base=telegram.api_base, timeout=telegram.timeout)
    answers: list[str] = []
    try:
        for text in split_lines(list(lines)):
            for _ in range(2):
                try:
                    message = await bot.send_message(chat, text, thread_id=telegram.thread_id)
                except TelegramError as exc:
                    if exc.failure is Failure.MIGRATED and exc.migrate_to is not None:
                        answers.append(
                            f"Telegram answered {exc.status}: {exc.description}; following the group to "
                            f"{exc.migrate_to} (set telegram.chat_id = {exc.migrate_to})"
                        )
                        if store is not None:
                            store.set_meta(f"{MIGRATED_KEY}{chat}", str(exc.migrate_to))
                        chat = exc.migrate_to
                        continue
                    if exc.failure is Failure.BAD_MARKUP:
                        answers.append(f"{exc}; resending as plain text")
                        message = await bot.send_message(chat, to_plain(text), html=False, thread_id=telegram.thread_id)
                    else:
                        hint = HINTS.get(exc.failure)
                        answers.append(str(exc) + (f" ({hint})" if hint else ""))
                        return False, answers
                answers.append(_accepted(message, chat))
                break
    except TelegramError as exc:
        answers.append(str(exc))
        return False, answers
    finally:
        await bot.aclose()
    return True, answers


async def send_test(config: Config, store: Store | None) -> tuple[bool, list[str]]:
    """`opstui notify test`: one short message that says where it came from."""
    lines = [
        f"✅ <b>opstui test message</b> from {esc(config.general.instance)}",
        "<i>Alerts and reports will arrive in this chat.</i>",
    ]
    return await send_now(config, store, lines)


def _accepted(message: dict[str, object], chat: int | str) -> str:
    chat_info = message.get("chat")
    title = ""
    if isinstance(chat_info, dict):
        name = chat_info.get("title") or chat_info.get("username") or chat_info.get("first_name")
        title = f" ({chat_info.get('type', 'chat')} {name!r})" if name else ""
    return f"Telegram accepted it: message_id {message.get('message_id')} in chat {chat}{title}"
