"""The built-in actions, which need no config: restart, stop and start a process through its manager, move a
queue's waiting jobs aside or delete them after a dump, and release a lock.

Each acts on the row a person picked, through the source that reported it: the PM2 daemon, systemd manager,
Docker engine, Redis server or database of that source's config. `[actions.<name>]` tunes one (key, rows,
timeout) or turns it off; the guard, the audit log, one run at a time per row and the output streaming come
from `Actions`, as for every kind.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeVar

from opstui.actions.base import Action, Target
from opstui.errors import ActionError

if TYPE_CHECKING:
    from opstui.config import Config

Named = TypeVar("Named")


class Builtin(Action):
    """What the built-ins share: settings from `[actions.<name>]`, and only the rows of sources they know."""

    kind = "builtin"

    def __init__(self, name: str, config: Config, *, scope: str, description: str, dangerous: bool = False) -> None:
        settings = config.actions
        own = settings.builtin(name)
        super().__init__(
            name=name,
            description=description,
            key=settings.builtin_key(name),
            scope=scope,
            rows=tuple(own.rows),
            confirm=own.confirm,
            dangerous=dangerous,
            timeout=own.timeout or settings.timeout,
        )
        self.config = config

    def offered_on(self, target: Target) -> bool:
        return super().offered_on(target) and target.source is not None and self.knows(target.source)

    @abstractmethod
    def knows(self, source: str) -> bool:
        """Whether rows of this source are ones the action can act on (the source's config is known)."""

    def exclusive_key(self, target: Target | None) -> str:
        # One run at a time per row, whichever built-in it is: a stop must not cross a restart of the same
        # process, nor a delete a move of the same queue.
        return f"{target.scope} {target.key}" if target is not None else self.name


def find(entries: Sequence[Named], name: str, what: str) -> Named:
    """The config entry called `name` (`[[pm2]] name = "pm2"`); refuses when the config no longer has it."""
    for entry in entries:
        if getattr(entry, "name", None) == name:
            return entry
    raise ActionError(f"the config has no {what} named {name!r} any more; restart opstui after changing it")


def builtin_actions(config: Config, *, systemctl: Sequence[str] = ("systemctl",)) -> list[Action]:
    """The built-ins that can act on something this config watches, unless `[actions.<name>]` turns them off.

    `systemctl` is the program that controls systemd units (a stand-in in tests).
    """
    settings = config.actions
    actions: list[Action] = []
    if config.pm2 or config.systemd or config.docker or config.processes.watch:
        from opstui.actions.processes import VERBS, ProcessControl

        actions += [ProcessControl(verb, config, systemctl=systemctl) for verb in VERBS]
    if any(redis.queues for redis in config.redis):
        from opstui.actions.queues import QueueDelete, QueueMove

        actions += [QueueMove(config), QueueDelete(config)]
    if any(redis.locks for redis in config.redis) or any(postgres.locks for postgres in config.postgres):
        from opstui.actions.locks import LockRelease

        actions.append(LockRelease(config))
    return [action for action in actions if settings.builtin(action.name).enabled]
