"""The guard: who is asking, what they confirmed, and the one check every caller's run goes through.

A caller cannot skip a check by forgetting it: `Actions.start` is the only way to run anything and it asks
the guard every time. Confirmation is data, not a convention: a `Plan` says what it requires, and the
caller hands back a `Confirmation` made from that very plan (with the typed phrase for a dangerous one).
"""

from __future__ import annotations

import getpass
import os
import sys
import time
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Literal

from opstui.actions.base import Action, Prepared, Requirement, Target
from opstui.errors import ActionError


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asked for a run, as the audit log names them."""

    kind: Literal["local", "telegram"]
    id: str
    """The local user name, or the Telegram user id."""
    via: str
    """What they used: tui, cli, bot."""
    username: str | None = None
    """The Telegram @username, when they have one."""
    tty: str | None = None
    origin: str | None = None
    """Where a local user came from: the SSH client's address."""

    @classmethod
    def local(cls, via: str) -> Actor:
        """The person at this terminal (or the script, when there is none)."""
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # a container user without a passwd entry
            user = f"uid {os.getuid()}"
        tty = None
        for stream in (sys.stdin, sys.stdout):
            try:
                tty = os.ttyname(stream.fileno())
                break
            except (OSError, ValueError, AttributeError):
                continue
        origin = os.environ.get("SSH_CLIENT", "").split(" ")[0] or None
        return cls(kind="local", id=user, via=via, tty=tty, origin=origin)

    @classmethod
    def telegram(cls, user_id: int, username: str | None = None) -> Actor:
        return cls(kind="telegram", id=str(user_id), via="bot", username=username)

    def __str__(self) -> str:
        if self.kind == "telegram":
            return f"telegram {self.id}" + (f" @{self.username}" if self.username else "")
        text = self.id + (f" on {self.tty}" if self.tty else "")
        text += f" from {self.origin}" if self.origin else ""
        return f"{text} ({self.via}{'' if self.tty else ', no tty'})"


@dataclass(frozen=True, slots=True)
class Plan:
    """A checked request to run one action: exactly what will run, and what must be given first.

    Made by `Actions.plan`; show `plan.shown` and `plan.requirement` to the person, then pass
    `plan.confirmation(...)` to `Actions.start`, or `Actions.decline(plan)` when they say no.
    """

    action: Action
    actor: Actor
    args: Mapping[str, str]
    target: Target | None
    prepared: Prepared
    requirement: Requirement
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created_at: float = field(default_factory=time.time)

    @property
    def shown(self) -> tuple[str, ...]:
        """What will run, one line per fact (program and arguments, directory, environment; secrets masked)."""
        return self.prepared.shown

    def confirmation(self, how: str, *, typed: str | None = None) -> Confirmation:
        """The person's yes to this plan; `how` lands in the audit log ("--yes", "y at the prompt")."""
        return Confirmation(plan_id=self.id, how=how, typed=typed)


@dataclass(frozen=True, slots=True)
class Confirmation:
    plan_id: str
    how: str
    typed: str | None = None


class Guard:
    """Every reason to refuse a run, in one place; each method raises ActionError with the reason."""

    def __init__(self, *, read_only: bool, telegram_allowlist: Collection[int | str] = ()) -> None:
        self.read_only = read_only
        self.telegram_allowlist = frozenset(str(user_id) for user_id in telegram_allowlist)

    def admit(self, actor: Actor) -> None:
        """May this person run actions at all?"""
        if not isinstance(actor, Actor):
            raise ActionError("an action needs to know who is asking (an Actor)")
        if actor.kind == "telegram" and actor.id not in self.telegram_allowlist:
            raise ActionError(f"{actor} may not run actions (not on the bot's allowlist)")
        if self.read_only:
            raise ActionError("opstui is in read-only mode (general.read_only or --read-only): no action runs")

    def confirmed(self, plan: Plan, confirmation: Confirmation | None) -> str:
        """Is the plan's requirement met? Returns how, for the audit log."""
        required = plan.requirement
        if required.kind == "none":
            return confirmation.how if confirmation is not None else "not asked (confirm = false)"
        if confirmation is not None and confirmation.plan_id != plan.id:
            raise ActionError(f"the confirmation given was for another request, not this run of {plan.action.name}")
        typed = (confirmation.typed or "").strip() if confirmation is not None else ""
        if required.kind == "typed" and typed != required.phrase:
            raise ActionError(
                f"{plan.action.name} is dangerous: it runs only when {required.phrase!r} is typed"
                + (f" (got {typed!r})" if typed else "")
            )
        if confirmation is None:
            raise ActionError(f"{plan.action.name} needs a confirmation first; nothing was confirmed")
        return confirmation.how
