"""Confirmations from Telegram: signed buttons bound to the person who asked, their chat and a deadline.

A button's `callback_data` (at most 64 bytes) is `verb.nonce.deadline.signature`: the signature is an HMAC over
the verb, nonce, deadline, the asking user's id and the chat, so a button pressed by someone else, in another
chat, after its deadline, or with made-up data is told apart and refused. The plan itself (what will run)
never leaves the process: it waits here under its nonce and is taken out once, so a replayed press finds
nothing, and a press after a restart is told to ask again.

The signing key is derived from the bot token (HMAC-SHA256 of a fixed label, keyed by the token) rather than
a random secret kept in the state store: it adds no new secret to store, protect or leak (whoever has the
token can already act as the bot), every daemon of a high-availability pair derives the same key, and
replacing a leaked token with @BotFather invalidates every button made with the old one.

Dangerous actions (a typed requirement) have no Confirm button: the person sends `/confirm CODE PHRASE`, the
same typed name `opstui action run` asks for, bound to them, their chat and the same deadline.

A menu (which process to restart, which mode to run a script in) is signed the same way: its buttons say
`0`..`9` instead of `y` or `n`, and a pick only leads to the next question or to a plan with its Confirm.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from opstui.actions import Actor, Plan

KEY_LABEL = b"opstui bot: confirmation buttons v1"
USED_KEPT = 600.0
"""Seconds a taken confirmation is remembered, to tell a replayed press what already happened."""
_CODE_ALPHABET = string.ascii_lowercase + string.digits
MENU_SIZE = 10
"""Buttons in a menu: a pick is one digit in the signed data."""


def signing_key(token: str) -> bytes:
    return hmac.new(token.encode(), KEY_LABEL, hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class Option:
    """One button of a menu: its label, and the action and arguments it leads to."""

    label: str
    action: str
    args: Mapping[str, str]


@dataclass(slots=True)
class Pending:
    """What waits for its person's press: a plan (Confirm / Cancel, or `/confirm` when dangerous) or a menu of
    options; and the message that asks."""

    actor: Actor
    chat_id: int
    expires_at: float
    title: str
    """The message's first line (HTML): what will run, on which row; or the menu's question."""
    plan: Plan | None = None
    options: tuple[Option, ...] = ()
    asked: Any = None
    """For a menu: the command it answers (the bot's `Asked`), whose reply the picked option becomes."""
    nonce: str = field(default_factory=lambda: secrets.token_urlsafe(9))
    code: str = field(default_factory=lambda: "".join(secrets.choice(_CODE_ALPHABET) for _ in range(6)))
    """What `/confirm` takes for a dangerous action."""
    message_id: int | None = None

    @property
    def user_id(self) -> int:
        return int(self.actor.id)

    @property
    def action(self) -> str:
        return self.plan.action.name if self.plan is not None else "(menu)"


@dataclass(frozen=True, slots=True)
class Decision:
    """What a press means: the pending plan or menu and the verb (`y`, `n`, or a menu's digit), or why nothing
    happens (`refusal`); an expired press also carries what it was for, so its message can say so."""

    verb: str | None = None
    pending: Pending | None = None
    refusal: str | None = None
    action: str | None = None
    """The action it was about, when known (for the audit log)."""
    expired: bool = False


class Confirmations:
    """The plans waiting for a yes, and the signed buttons that give it."""

    def __init__(self, token: str, *, ttl: float, clock: Callable[[], float]) -> None:
        self._key = signing_key(token)
        self.ttl = ttl
        self.clock = clock
        self._pending: dict[str, Pending] = {}
        self._used: dict[str, tuple[float, str, str]] = {}
        """nonce -> (when, what happened, the action's name), for a replayed press."""

    def add(self, plan: Plan, *, chat_id: int, title: str) -> Pending:
        """A plan waiting for its asker's Confirm (the plan says who asked)."""
        return self._wait(Pending(plan.actor, chat_id, self.clock() + self.ttl, title, plan=plan))

    def menu(self, options: list[Option], *, asked: Any, actor: Actor, chat_id: int, title: str) -> Pending:
        """A question with up to MENU_SIZE options, only for `actor` to answer."""
        pending = Pending(actor, chat_id, self.clock() + self.ttl, title, options=tuple(options[:MENU_SIZE]))
        pending.asked = asked
        return self._wait(pending)

    def _wait(self, pending: Pending) -> Pending:
        self._pending[pending.nonce] = pending
        return pending

    def button(self, verb: str, pending: Pending) -> str:
        deadline = _b36(int(pending.expires_at))
        signature = self._sign(verb, pending.nonce, deadline, pending.user_id, pending.chat_id)
        return f"{verb}.{pending.nonce}.{deadline}.{signature}"

    def decide(self, data: str, *, user_id: int, chat_id: int | None, message_id: int | None) -> Decision:
        """Check a pressed button; a Decision with a pending plan is taken out (a second press finds nothing)."""
        parts = data.split(".")
        if len(parts) != 4 or not (parts[0] in ("y", "n") or (len(parts[0]) == 1 and parts[0].isdigit())):
            return Decision(refusal="this button is not one of opstui's: nothing was done")
        verb, nonce, deadline, signature = parts
        pending = self._pending.get(nonce)
        action = pending.action if pending is not None else None
        expected = self._sign(verb, nonce, deadline, user_id, chat_id)
        if not hmac.compare_digest(expected, signature):
            if pending is not None and pending.user_id != user_id:
                return Decision(
                    refusal=f"only {who(pending.actor)}, who asked for it, can confirm this: nothing was done",
                    action=action,
                )
            return Decision(
                refusal="this button's signature does not match (forged or altered): nothing was done", action=action
            )
        expires_at = int(deadline, 36)  # signed by us, so it is our own base-36 number
        if self.clock() > expires_at:
            if pending is not None:
                self.take(pending, "expired")
            return Decision(
                pending=pending,
                refusal=f"expired: a confirmation is valid for {int(self.ttl)} s; ask again",
                action=action or (self._used[nonce][2] if nonce in self._used else None),
                expired=True,
            )
        if nonce in self._used:
            _, what, used_action = self._used[nonce]
            return Decision(refusal=f"already {what}: nothing more was done", action=used_action)
        if pending is None:
            return Decision(refusal="opstui restarted since this was asked, so it is no longer waiting; ask again")
        if message_id is not None and pending.message_id is not None and message_id != pending.message_id:
            return Decision(refusal="this button belongs to another message: nothing was done", action=action)
        if verb.isdigit() and int(verb) >= len(pending.options):
            return Decision(refusal="this button's signature does not match: nothing was done", action=action)
        self.take(pending, {"y": "confirmed", "n": "cancelled"}.get(verb, "chosen"))
        return Decision(verb=verb, pending=pending, action=action)

    def by_code(self, code: str, *, user_id: int, chat_id: int) -> Pending | str:
        """The dangerous plan a `/confirm CODE` names, taken out; or why not."""
        pending = next((p for p in self._pending.values() if p.plan is not None and p.code == code.lower()), None)
        if pending is None:
            return f"no confirmation {code!r} is waiting (it expired, was used, or opstui restarted); ask again"
        if pending.user_id != user_id or pending.chat_id != chat_id:
            return f"confirmation {code} was asked for by {who(pending.actor)} in another chat or by another person"
        if self.clock() > pending.expires_at:
            self.take(pending, "expired")
            return f"confirmation {code} expired: it is valid for {int(self.ttl)} s; ask again"
        self.take(pending, "confirmed")
        return pending

    def take(self, pending: Pending, what: str) -> None:
        self._pending.pop(pending.nonce, None)
        now = self.clock()
        self._used[pending.nonce] = (now, what, pending.action)
        for nonce, (at, _, _) in list(self._used.items()):
            if now - at > USED_KEPT:
                del self._used[nonce]

    def expired(self) -> list[Pending]:
        """The plans whose time is up, taken out (the bot edits their messages and records them as declined)."""
        now = self.clock()
        late = [p for p in self._pending.values() if now > p.expires_at]
        for pending in late:
            self.take(pending, "expired")
        return late

    def waiting(self) -> list[Pending]:
        return list(self._pending.values())

    def _sign(self, verb: str, nonce: str, deadline: str, user_id: int, chat_id: int | None) -> str:
        message = f"{verb}.{nonce}.{deadline}.{user_id}.{chat_id}".encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()[:12]
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def who(actor: Actor) -> str:
    """How a Telegram user is named in the bot's messages: `@ann`, or `user 111222333` without a username."""
    return f"@{actor.username}" if actor.username else f"user {actor.id}"


def _b36(value: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        value, rest = divmod(value, 36)
        out = digits[rest] + out
        if value == 0:
            return out
