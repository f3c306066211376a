"""The Telegram command bot: /status, /health, /queue, /logs, /restart, /recover, /silence ... from a phone.

It runs in the daemon (never in the TUI), polls only while that daemon leads, lets only `[bot] admins` change
anything and `[bot] viewers` read, and runs actions through the same guard and audit log as the TUI and the
CLI, after a signed Confirm button (or a typed `/confirm` for dangerous ones). See docs/bot.md.

For the daemon:

    bot = start_bot(config, engine=engine, store=store, actions=lambda: actions,
                    is_leader=lambda: leadership.leading, leader=leadership.describe)
    leadership.on_change(bot.leadership_changed)      # optional: hand-over at once instead of within 1 s
    ...
    bot.reconfigure(new_config) or <stop it, start_bot again>; bot.attach(new_engine)   # on reload
    await bot.stop()

- `core.py`: `CommandBot`: polling, leadership, authorization, confirmations, replies.
- `commands.py`: the command registry and what each command does; `views.py`: the snapshot as phone-sized HTML.
- `confirm.py`: signed, expiring buttons bound to the asker; `status.py`: the bot's fact ("bot" check).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from opstui.bot.core import CommandBot
from opstui.bot.status import stored_bot_check

if TYPE_CHECKING:
    from opstui.actions import Actions
    from opstui.config import Config
    from opstui.engine import Engine
    from opstui.model import Snapshot
    from opstui.state import Store

__all__ = ["CommandBot", "start_bot", "stored_bot_check"]


def start_bot(
    config: Config,
    *,
    engine: Engine,
    store: Store,
    actions: Callable[[], Actions] | None = None,
    snapshot: Callable[[], Snapshot | None] | None = None,
    is_leader: Callable[[], bool] | None = None,
    leader: Callable[[], str] | None = None,
) -> CommandBot | None:
    """Start the bot when `[bot] enabled = true` (else None) on a started engine; `await bot.stop()` ends it.

    `actions` gives the daemon's `Actions` (made with `telegram_allowlist=config.bot.admins`); without it the
    bot makes its own from the config. `snapshot` defaults to the engine's (a daemon that replaces its engine
    on reload passes `lambda: daemon.engine.snapshot` and calls `bot.attach(new_engine)`). The bot's fact
    joins every snapshot of `engine` ahead of the alert rules.
    """
    if not config.bot.enabled:
        return None
    owns_actions = actions is None
    if actions is None:
        from opstui.actions import Actions
        from opstui.state import StateStore

        # The audit log is the host's (SQLite), also when alerting's store is a shared PostgreSQL.
        audit_store = store if isinstance(store, StateStore) else StateStore.in_dir(config.state_dir())
        own = Actions.from_config(
            config, store=audit_store, snapshot=lambda: engine.snapshot, telegram_allowlist=config.bot.admins
        )
        actions = lambda: own  # noqa: E731
    bot = CommandBot(
        config,
        store=store,
        actions=actions,
        snapshot=snapshot or (lambda: engine.snapshot),
        is_leader=is_leader,
        leader=leader,
        owns_actions=owns_actions,
    )
    bot.attach(engine)
    bot.start()
    return bot
