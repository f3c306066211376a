"""How the command bot is doing, as the fact the TUI, `opstui check` and the alert rules see (kind "bot").

The polling daemon keeps its status in the state store, so another process (a TUI, `opstui check`) can show it:
polling, standing by while another daemon leads, a 409 conflict (another program polls the same bot), Telegram
unreachable, or stopped because Telegram refuses the token.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Literal

from opstui.errors import StateError
from opstui.model import CheckInfo, Level
from opstui.state import Store
from opstui.units import format_age

STATUS_KEY = "bot.telegram"
CONFLICT_WARNING_AFTER = 60.0
"""A 409 that lasts this long is a warning: a moment of overlap (a restart, a hand-over) is not."""
UNREACHABLE_WARNING_AFTER = 300.0
REFRESH_EVERY = 60.0
"""The polling bot rewrites its status at least this often, so a reader can tell it still runs."""
GONE_AFTER = 180.0
"""A status not refreshed for this long belongs to a bot that no longer runs: it is not shown."""

State = Literal["starting", "polling", "standby", "conflict", "unreachable", "unauthorized"]


@dataclass(slots=True)
class BotStatus:
    state: State = "starting"
    problem: str | None = None
    since: float | None = None
    """When the current state began."""
    username: str | None = None
    last_command_at: float | None = None
    updated_at: float = 0.0


def bot_check(status: BotStatus | None, *, now: float) -> CheckInfo | None:
    """The fact about the bot; None when no bot runs (or ran recently)."""
    if status is None:
        return None
    if status.state != "unauthorized" and now - status.updated_at > GONE_AFTER:
        return None
    lasted = now - status.since if status.since is not None else 0.0
    name = f"@{status.username}" if status.username else "the bot"
    level = Level.OK
    if status.state == "unauthorized":
        level = Level.CRITICAL
        detail = (
            f"Telegram refuses the bot, so nobody can command opstui: {status.problem}; the token is wrong or "
            "was revoked (get it from @BotFather), or api_base is not a Bot API: fix [telegram] and restart"
        )
    elif status.state == "conflict":
        level = Level.WARNING if lasted >= CONFLICT_WARNING_AFTER else Level.OK
        detail = f"{status.problem} (for {format_age(lasted)})"
    elif status.state == "unreachable":
        level = Level.WARNING if lasted >= UNREACHABLE_WARNING_AFTER else Level.OK
        detail = f"cannot reach Telegram for {format_age(lasted)}: {status.problem}"
    elif status.state == "standby":
        detail = f"standing by: {status.problem}" if status.problem else "standing by"
    elif status.state == "starting":
        detail = f"{name} is starting"
    else:
        last = status.last_command_at
        detail = f"{name} answers commands" + (f"; the last came {format_age(now - last)} ago" if last else "")
    return CheckInfo(key="telegram-bot", name="telegram bot", kind="bot", level=level, source="bot", detail=detail)


def read_bot_status(store: Store) -> BotStatus | None:
    raw = store.get_meta(STATUS_KEY)
    if not raw:
        return None
    try:
        return BotStatus(**json.loads(raw))
    except (TypeError, ValueError):
        return None


def write_bot_status(store: Store, status: BotStatus) -> None:
    store.set_meta(STATUS_KEY, json.dumps(asdict(status)))


def stored_bot_check(store: Store, now: float) -> CheckInfo | None:
    """The fact as the polling daemon last recorded it (for a TUI and `opstui check`)."""
    try:
        return bot_check(read_bot_status(store), now=now)
    except StateError:
        return None
