"""The `[bot]` section: the Telegram command bot the daemon runs (its token is `[telegram] token`)."""

from __future__ import annotations

from pydantic import Field, field_validator

from opstui.config._base import Duration, Section


class BotConfig(Section):
    enabled: bool = False
    """Answer commands (/status, /restart, ...) from Telegram; runs in `opstui daemon` only."""
    admins: list[int] = Field(default_factory=list)
    """Telegram user ids that may run every command, including the ones that change something."""
    viewers: list[int] = Field(default_factory=list)
    """Telegram user ids that may run the read-only commands (/status, /health, /queue, /logs, ...)."""
    chats: list[int] = Field(default_factory=list)
    """Only take commands in these chats (a private chat's id is the user's id); empty: any chat."""
    poll_timeout: Duration = Field(default=30.0, ge=1, le=50)
    """How long one long poll waits for a command before asking again."""
    confirm_within: Duration = Field(default=60.0, ge=10, le=600)
    """How long a Confirm button (or a /confirm code) stays valid."""
    stale_after: Duration = Field(default=600.0, gt=0)
    """A command that changes something and was sent longer ago than this (while the bot was not running) is
    not acted on; the sender is told to send it again."""

    @field_validator("admins", "viewers")
    @classmethod
    def _user_ids(cls, value: list[int]) -> list[int]:
        for user_id in value:
            if user_id <= 0:
                raise ValueError(
                    f"{user_id} is not a Telegram user id (those are positive; negative ids are chats, which "
                    "go in [bot] chats); send /whoami to the bot to learn yours"
                )
        return value
