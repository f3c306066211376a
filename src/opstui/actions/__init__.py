"""Recovery actions: defined in config or built in, guarded in one place, run safely, and audited.

Every caller (the TUI, `opstui action`, the Telegram bot) goes through one object, `Actions`:

    actions = Actions.from_config(config, store=store, snapshot=lambda: engine.snapshot)
    actions.global_actions(), actions.for_row(row)          # what to offer
    plan = await actions.plan(name, actor=Actor.local("tui"), args={**row_args(row), "mode": "soft"})
    plan.shown, plan.requirement                              # show exactly what will run; ask
    run = await actions.start(plan, plan.confirmation("pressed Confirm", typed=...))
    run.subscribe(callback) / async for line in run.follow()  # output as it comes
    result = await run.wait()
    actions.audit.recent(20)                                  # the audit log

The built-ins are there by name whenever the config watches something they act on: `restart`, `stop`,
`start` (args `{"process.name": "worker"}`), `queue-move`, `queue-delete` (`{"queue.name": "incoming"}`),
`lock-release` (`{"lock.name": "daily batch"}`); `queue-delete` and a lock that is not stale want the row's
name typed (`plan.requirement.phrase`).

`plan` and `start` raise `ActionError` to refuse, after writing the refusal to the audit log; its message is
the reason to show. The guard (`guard.Guard`) checks, on every `plan` and again on every `start`: who asks
(an `Actor`; Telegram users must be on the allowlist), read-only mode, the row (it must be in the current
snapshot, and every value taken from it must match a strict pattern: it becomes one whole argument, never
split or joined), the parameters, the confirmation the plan requires, that what would run has not changed
since it was shown, and that the same action is not already running (across processes, through the audit
table).

Adding a kind (the process, queue and lock built-ins of `builtin.py` plug in here): subclass `base.Action`,
set `kind`, implement `describe()` (what it would run, for listings) and `prepare(target, params)`
returning a `base.Prepared` whose `shown` lines are exactly what will run and whose `execute(emit)` coroutine
does the work, writes output with `emit(stream, line)` and returns an `Outcome`; raise ActionError in
`prepare` to refuse. `prepare` may be a coroutine when what will run must be looked up first (PM2's ids, the
lock row as the database holds it), and `Prepared.identity` says what may not change before the run when
that is less than `shown` (a queue's count of the moment may). Override `offered_on(target)` to narrow the
rows (only PM2 processes), `requirement(target)` to decide confirmation per row (a stale lock needs none
beyond yes, a held one its name typed), `exclusive_key(target)` to allow runs on different rows at once,
and `parameters()` for values people choose. Then `actions.register(MyAction(...))`. Timeouts,
cancellation, redaction, bounded output, one-at-a-time and the audit log come from `Actions` for every kind.
"""

from opstui.actions.audit import AuditEntry, AuditLog
from opstui.actions.base import Action, Outcome, Parameter, Prepared, Requirement, Target, row_args, safe_value
from opstui.actions.core import Actions
from opstui.actions.guard import Actor, Confirmation, Plan
from opstui.actions.runner import OutputLine, Run, RunResult

__all__ = [
    "Action",
    "Actions",
    "Actor",
    "AuditEntry",
    "AuditLog",
    "Confirmation",
    "Outcome",
    "OutputLine",
    "Parameter",
    "Plan",
    "Prepared",
    "Requirement",
    "Run",
    "RunResult",
    "Target",
    "row_args",
    "safe_value",
]
