"""The recovery actions and alert silencing as commands of the TUI's one registry.

Each action (configured or built in) becomes a `Command` on its pane's rows, bound to its key. The app's
guard (`OpsApp.run_command`) refuses it in read-only mode and asks before it runs; what it asks is the
action's checked plan (`Actions.plan`): exactly what will run, and for a dangerous one the phrase to type.
`Actions.start` then checks everything again, so nothing in the TUI can run an action around the guard, and
every run, refusal and "no" lands in the audit log.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList

from opstui.actions import Action, Actions, Actor, Parameter, Target, row_args
from opstui.errors import ActionError, OpsError
from opstui.model import AlertInfo
from opstui.tui.commands import Cancelled, Command, CommandContext, Question, normalise_key

if TYPE_CHECKING:
    from opstui.state import StateStore

PANES = {"process": "processes", "queue": "queues", "lock": "locks"}
"""The pane whose rows each scope of action acts on."""
FOOTER = {"restart": "restart", "queue-move": "move aside", "lock-release": "release"}
"""The built-ins the footer shows on their pane (the rarer ones are on the help screen and in the palette:
at 80 columns the footer has room for one or two)."""
TITLES = {
    "restart": "Restart the process",
    "stop": "Stop the process",
    "start": "Start the process",
    "queue-move": "Move the queue's jobs aside",
    "queue-delete": "Delete the queue's jobs",
    "lock-release": "Release the lock",
}
"""The built-ins as the help screen and the palette name them (their descriptions say more)."""
SILENCE_FOR = ("15m", "1h", "4h", "1d")


def action_commands(actions: Actions, actor: Actor) -> list[Command]:
    """One command per action: on its pane's rows (or anywhere, for a global action), with its key."""
    return [_command(actions, actor, action) for action in actions.all()]


def _command(actions: Actions, actor: Actor, action: Action) -> Command:
    pane = PANES.get(action.scope)

    def args(context: CommandContext) -> dict[str, str]:
        return row_args(context.item) if pane is not None else {}

    async def describe(context: CommandContext) -> Question:
        values: dict[str, str] = {}
        for parameter in action.parameters():  # a script's mode, and its value
            if parameter.when is None or values.get(parameter.when[0]) in parameter.when[1]:
                value = await context.app.push_screen_wait(ParameterScreen(action, parameter))
                if value is None:
                    raise Cancelled(f"no {parameter.name} picked")
                values[parameter.name] = value
        # Refusals are written to the audit log by Actions, with the reason shown here.
        plan = await actions.plan(action.name, actor=actor, args={**args(context), **values})
        required = plan.requirement
        row = f" {plan.target.name}" if plan.target is not None else ""
        return Question(
            "\n".join(plan.shown),
            title=f"{action.name}{row}",
            typed=required.phrase if required.kind == "typed" else None,
            ask=required.kind != "none",
            about=plan,
        )

    async def run(context: CommandContext) -> None:
        try:
            if context.question is None:
                # Not through the guard's question (nothing in the TUI does that): no confirmation to give,
                # so Actions refuses anything that needs one.
                plan = await actions.plan(action.name, actor=actor, args=args(context))
                confirmation = None
            else:
                plan = context.question.about
                how = "typed the name in the TUI" if context.typed is not None else "pressed Yes in the TUI"
                confirmation = plan.confirmation(how, typed=context.typed) if context.question.ask else None
            started = await actions.start(plan, confirmation)
        except ActionError as exc:  # read-only, changed since shown, already running, ...: recorded by Actions
            context.app.notify(f"{action.name} refused: {exc}", severity="warning", markup=False, timeout=10)
            return
        context.app.follow_run(started)

    async def not_run(context: CommandContext, outcome: str, reason: str) -> None:
        if outcome == "cancelled" and context.question is not None:
            await actions.decline(context.question.about, reason)
        elif outcome == "refused" and context.app.read_only:
            # The TUI refused before asking; the actions' own guard says it again, into the audit log.
            with contextlib.suppress(ActionError):
                await actions.plan(action.name, actor=actor, args=args(context) if context.item is not None else {})

    title = TITLES.get(action.name) or (action.description if 0 < len(action.description) <= 30 else action.name)
    return Command(
        f"action.{action.name}",
        title,
        _help(action),
        run,
        normalise_key(action.key) if action.key else None,
        "Actions",
        footer=FOOTER.get(action.name) if action.name in TITLES else action.name if action.key else None,
        mutating=True,
        describe=describe,
        scope=pane,
        offered=(lambda item: action.offered_on(Target.of(item))) if pane is not None else None,
        not_run=not_run,
    )


def _help(action: Action) -> str:
    where = f"on a {action.scope} row" if action.scope != "global" else "anywhere"
    return f"{action.description or action.name} ({where}; {action.requirement(None).text})"


class ParameterScreen(ModalScreen[str | None]):
    """Pick a value an action takes from the person (a script's mode from its list, or the value after it)."""

    BINDINGS: ClassVar = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, action: Action, parameter: Parameter) -> None:
        super().__init__(id="parameter")
        self.action = action
        self.parameter = parameter

    def compose(self) -> ComposeResult:
        with Vertical(id="parameter-box"):
            yield Label(f"{self.action.name}: which {self.parameter.name}?", id="parameter-title", markup=False)
            yield Label(self.parameter.help, id="parameter-help", markup=False)
            if self.parameter.choices:
                yield OptionList(*self.parameter.choices, id="parameter-choices")
            else:
                yield Input(placeholder=self.parameter.name, id="parameter-value")
            yield Label("enter picks, esc cancels", id="parameter-keys")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(str(event.option.prompt))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.dismiss(event.value.strip())


# ------------------------------------------------------------------------------------------- silencing


def silence_command(store: StateStore, actor: Actor) -> Command:
    """Silence the alert under the cursor for a while (from a small dialog).

    Not mutating: it mutes opstui's own notifications and changes nothing of the system watched, so it is
    allowed in read-only mode too (as the CLI's `opstui silence` is).
    """

    def run(context: CommandContext) -> None:
        alert: AlertInfo = context.item

        def picked(duration: str | None) -> None:
            if duration is not None:
                context.app.run_worker(_silence(context, store, alert, duration, str(actor)), exit_on_error=False)

        context.app.push_screen(SilenceScreen(alert), picked)

    return Command(
        "silence",
        "Silence the alert",
        "Mute the alert under the cursor for a while (allowed in read-only mode: it changes only opstui)",
        run,
        "z",
        "Actions",
        footer="silence",
        scope="alerts",
    )


async def _silence(context: CommandContext, store: StateStore, alert: AlertInfo, duration: str, by: str) -> None:
    from opstui.alerts import silence

    try:
        made = await asyncio.to_thread(silence, store, alert.key, duration, by=by, comment="from the TUI")
    except OpsError as exc:
        context.app.notify(f"Not silenced: {exc}", severity="error", markup=False)
        return
    context.app.notify(
        f"Silenced {alert.summary} for {duration} (silence {made.id}; `opstui silence --remove {made.id}` ends it)",
        title="Silenced",
        markup=False,
    )


class SilenceScreen(ModalScreen[str | None]):
    """Pick how long to silence one alert: a few fixed durations, by key or by button."""

    BINDINGS: ClassVar = [
        Binding("escape,n", "pick(None)", "Cancel"),
        *(Binding(str(n), f"pick('{d}')", d, show=False) for n, d in enumerate(SILENCE_FOR, start=1)),
    ]

    def __init__(self, alert: AlertInfo) -> None:
        super().__init__(id="silence")
        self.alert = alert

    def compose(self) -> ComposeResult:
        with Vertical(id="silence-box"):
            yield Label(f"Silence: {self.alert.summary}", id="silence-title", markup=False)
            yield Label(
                "Its notifications stop for the time you pick; it stays on screen, marked silenced.",
                id="silence-detail",
                markup=False,
            )
            with Horizontal(id="silence-buttons"):
                for n, duration in enumerate(SILENCE_FOR, start=1):
                    yield Button(f"{duration} ({n})", id=f"for-{duration}")
                yield Button("Cancel", variant="primary", id="cancel")

    def on_mount(self) -> None:
        self.query_one(f"#for-{SILENCE_FOR[1]}", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        button = event.button.id or ""
        self.dismiss(button.removeprefix("for-") if button.startswith("for-") else None)

    def action_pick(self, duration: str | None) -> None:
        self.dismiss(duration)
