"""`Actions`: the one door every caller (TUI, CLI, bot) goes through to list, plan, confirm and run an action."""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import logging
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import TYPE_CHECKING

from opstui.actions.audit import AuditLog, Request
from opstui.actions.base import Action, Prepared, Row, Target, rows_of
from opstui.actions.builtin import builtin_actions
from opstui.actions.guard import Actor, Confirmation, Guard, Plan
from opstui.actions.kinds import configured_actions
from opstui.actions.runner import Run, RunResult
from opstui.config.actions import ROW_FIELDS
from opstui.errors import ActionError, StateError
from opstui.model import Snapshot
from opstui.redact import redact
from opstui.units import format_duration

if TYPE_CHECKING:
    from opstui.config import Config
    from opstui.state import StateStore

log = logging.getLogger(__name__)

RECENT_RUNS = 10
"""Runs kept in memory for the TUI's action pane (the audit log keeps them all)."""
DEADLINE_SLACK = 30.0
"""Seconds past timeout and grace after which a run left "running" by a dead opstui stops blocking others."""


class Actions:
    """Lists actions, checks requests with the guard, runs them, and writes every step to the audit log.

    `plan` and `start` are the only ways in, and every refusal on either is audited before it is raised as
    ActionError (whose message is the reason to show).
    """

    def __init__(
        self,
        actions: Iterable[Action],
        *,
        audit: AuditLog,
        snapshot: Callable[[], Snapshot | None],
        read_only: bool,
        telegram_allowlist: Collection[int | str] = (),
        keep_lines: int = 1000,
        kill_grace: float = 5.0,
    ) -> None:
        self.audit = audit
        self.guard = Guard(read_only=read_only, telegram_allowlist=telegram_allowlist)
        self.keep_lines = keep_lines
        self.kill_grace = kill_grace
        self.runs: deque[Run] = deque(maxlen=RECENT_RUNS)
        """The latest runs, oldest first, finished or not."""
        self._snapshot = snapshot
        self._actions: dict[str, Action] = {}
        for action in actions:
            self.register(action)

    @classmethod
    def from_config(
        cls,
        config: Config,
        *,
        store: StateStore,
        snapshot: Callable[[], Snapshot | None] = lambda: None,
        telegram_allowlist: Collection[int | str] = (),
    ) -> Actions:
        """The actions a config defines and the built-ins for what it watches; `snapshot` gives the current
        snapshot (`lambda: engine.snapshot`)."""
        audit = AuditLog(store, keep=config.actions.audit_keep)
        with contextlib.suppress(StateError):  # tidying is a courtesy: a locked database must not stop a start
            audit.tidy()
        return cls(
            [*configured_actions(config), *builtin_actions(config)],
            audit=audit,
            snapshot=snapshot,
            read_only=config.general.read_only,
            telegram_allowlist=telegram_allowlist,
            keep_lines=config.actions.output_lines,
            kill_grace=config.actions.kill_grace,
        )

    @property
    def read_only(self) -> bool:
        return self.guard.read_only

    def register(self, action: Action) -> None:
        """Add an action (the built-ins add theirs beside the configured ones); names must be unique."""
        if action.name in self._actions:
            raise ActionError(f"two actions are named {action.name!r}; rename one in [actions]")
        self._actions[action.name] = action

    def all(self) -> list[Action]:
        return list(self._actions.values())

    def get(self, name: str) -> Action:
        action = self._actions.get(name)
        if action is None:
            hint = difflib.get_close_matches(name, list(self._actions), n=1)
            known = f"did you mean {hint[0]!r}?" if hint else f"known: {', '.join(self._actions) or 'none'}"
            raise ActionError(f"no action named {redact(repr(name))}; {known}")
        return action

    def global_actions(self) -> list[Action]:
        return [action for action in self._actions.values() if action.scope == "global"]

    def for_row(self, row: Row) -> list[Action]:
        """The actions offered on a process, queue or lock row (the TUI's focused row)."""
        target = Target.of(row)
        return [action for action in self._actions.values() if action.offered_on(target)]

    async def plan(self, name: str, *, actor: Actor, args: Mapping[str, str] | None = None) -> Plan:
        """Check a request and say exactly what would run; raises ActionError (audited) to refuse.

        `args` names the row with `scope.field` keys (`{"process.key": "pm2:api"}`, see `row_args`) and
        gives the action's parameters by name (`{"mode": "soft"}`).
        """
        args = dict(args or {})
        action: Action | None = None
        target: Target | None = None
        try:
            self.guard.admit(actor)
            action = self.get(name)
            target, prepared = await self._prepare(action, args)
        except ActionError as exc:
            await self._refuse(
                Request(actor, name, action.kind if action else None, args=[f"{k}={v}" for k, v in args.items()]),
                str(exc),
            )
            raise
        return Plan(action, actor, args, target, prepared, action.requirement(target))

    async def start(self, plan: Plan, confirmation: Confirmation | None = None) -> Run:
        """Run a plan, once its requirement is met; returns at once with the Run to follow.

        Refused (ActionError, audited) in read-only mode, without the confirmation the plan requires, when
        what would run has changed since the plan was shown, or while the same action is already running.
        """
        action = plan.action
        request = Request(
            plan.actor, action.name, action.kind, plan.target.key if plan.target else None, args=plan.shown
        )
        try:
            self.guard.admit(plan.actor)
            how = self.guard.confirmed(plan, confirmation)
            target, prepared = await self._prepare(action, plan.args)
            if not prepared.same_run(plan.prepared) or action.requirement(target) != plan.requirement:
                raise ActionError(
                    f"what {action.name} would run has changed since it was shown "
                    f"(now: {' '.join(prepared.shown[:1])}); ask again"
                )
        except ActionError as exc:
            await self._refuse(request, str(exc))
            raise
        request = Request(request.actor, request.action, request.kind, request.target, request.args, how)
        deadline = time.time() + action.timeout + self.kill_grace + DEADLINE_SLACK
        claimed = await asyncio.to_thread(
            self.audit.claim, request, exclusive=action.exclusive_key(plan.target), deadline=deadline
        )
        if isinstance(claimed, str):
            raise ActionError(claimed)
        run = Run(plan, audit_id=claimed, keep_lines=self.keep_lines)
        run.attach(asyncio.create_task(self._execute(run), name=f"action {action.name}"))
        self.runs.append(run)
        return run

    async def decline(self, plan: Plan, how: str) -> None:
        """The person said no: record it (as cancelled, with how)."""
        request = Request(
            plan.actor, plan.action.name, plan.action.kind, plan.target.key if plan.target else None, plan.shown
        )
        await asyncio.to_thread(self.audit.declined, request, how)

    async def close(self, reason: str = "opstui is stopping") -> None:
        """Cancel every run still going (each stops its process group) and wait for them to be recorded."""
        running = [run for run in self.runs if run.running]
        for run in running:
            run.cancel(reason)
        await asyncio.gather(*(run.wait() for run in running))

    async def _prepare(self, action: Action, args: Mapping[str, str]) -> tuple[Target | None, Prepared]:
        selector = {k: v for k, v in args.items() if "." in k}
        params = {k: v for k, v in args.items() if "." not in k}
        target = self._target(action, selector)
        prepared = action.prepare(target, params)
        return target, prepared if isinstance(prepared, Prepared) else await prepared

    def _target(self, action: Action, selector: Mapping[str, str]) -> Target | None:
        """The row the request names, found in the current snapshot; the values come from there, not the caller."""
        scope = action.scope
        if scope == "global":
            if selector:
                raise ActionError(f"{action.name} does not act on a row; drop {', '.join(selector)}")
            return None
        if not selector:
            raise ActionError(f"{action.name} acts on a {scope} row: name it, e.g. {scope}.name=NAME")
        fields: dict[str, str] = {}
        for key, value in selector.items():
            prefix, _, field_name = key.partition(".")
            if prefix != scope or field_name not in ROW_FIELDS[scope]:
                known = ", ".join(f"{scope}.{f}" for f in ROW_FIELDS[scope])
                raise ActionError(f"{action.name} acts on a {scope} row, named by {known}; got {key!r}")
            fields[field_name] = value
        wanted = " ".join(f"{k}={redact(repr(v))}" for k, v in fields.items())
        snapshot = self._snapshot()
        rows = [Target.of(row) for row in rows_of(snapshot, scope)] if snapshot is not None else []
        matches = [t for t in rows if all(t.fields.get(k) == v for k, v in fields.items())]
        if not matches:
            seen = ", ".join(redact(t.name) for t in rows[:10]) if rows else f"no source reports {scope} rows"
            raise ActionError(f"no {scope} row with {wanted} in the current snapshot ({seen})")
        if len(matches) > 1:
            keys = ", ".join(redact(t.key) for t in matches[:5])
            raise ActionError(f"{len(matches)} {scope} rows have {wanted} ({keys}); name one by {scope}.key")
        target = matches[0]
        if not action.offered_on(target):
            raise ActionError(
                f"{action.name} is not offered on the {scope} row {redact(target.key)!r}"
                + (f" (only on {', '.join(action.rows)})" if action.rows else "")
            )
        return target

    async def _execute(self, run: Run) -> None:
        action = run.plan.action
        started = time.monotonic()
        try:
            outcome = await asyncio.wait_for(run.plan.prepared.execute(run.emit), action.timeout)
            result = RunResult(
                "ok" if outcome.ok else "failed", time.monotonic() - started, outcome.exit_status, outcome.detail
            )
        except TimeoutError:
            reason = f"still running after {format_duration(action.timeout)}, so its process group was stopped"
            result = RunResult("timeout", time.monotonic() - started, reason=reason)
        except asyncio.CancelledError:
            result = RunResult("cancelled", time.monotonic() - started, reason=run.cancel_reason or "cancelled")
        except Exception as exc:  # a bug in a kind must still end the run and reach the audit log
            log.exception("action %s failed inside opstui", action.name)
            result = RunResult("failed", time.monotonic() - started, reason=f"opstui error: {redact(str(exc))}")
        try:
            await asyncio.to_thread(self.audit.finish, run.audit_id, result, run.tail())
        except StateError as exc:
            log.error("could not record the end of %s in the audit log: %s", action.name, exc)
        finally:  # even when a second cancel (see Run.cancel) lands while recording: the run has ended
            run.finish(result)

    async def _refuse(self, request: Request, reason: str) -> None:
        try:
            await asyncio.to_thread(self.audit.refused, request, reason)
        except StateError as exc:
            log.error("could not record a refusal in the audit log: %s", exc)
