"""Recovery actions from the keyboard: the key on a row, the exact plan in the confirmation, the typed phrase
of a dangerous one, read-only refusals that nothing in the TUI can get around, the Actions pane with the
output and the audit log, and silencing an alert."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.message import Message
from textual.widgets import Button, Input

from opstui.actions import Actions, Actor
from opstui.alerts import active_silences
from opstui.config import Config
from opstui.model import Snapshot
from opstui.state import StateStore
from opstui.tui.actions import SilenceScreen, action_commands, silence_command
from opstui.tui.app import CommandOutcome, OpsApp
from opstui.tui.cells import KeyedTable, Lines
from opstui.tui.screens import ConfirmScreen, HelpScreen
from tui_sample import sample_app, sample_snapshot

SMALL = (80, 24)
ME = Actor.local("tui")
SAYS = "import sys; print('restarting', sys.argv[1]); print('slow start', file=sys.stderr)"


def config_with(tmp_path: Path, *, read_only: bool = False, **actions: Any) -> Config:
    general = {"instance": "bot-vps-1", "timezone": "UTC", "read_only": read_only, "state_dir": str(tmp_path / "state")}
    return Config.model_validate({"general": general, "actions": actions})


RESTART_APP = {
    "name": "restart-app",
    "description": "Restart the app",
    "scope": "process",
    "key": "R",
    "command": [sys.executable, "-c", SAYS, "{process.name}"],
}
PURGE = {"name": "purge-dead", "dangerous": True, "key": "X", "command": [sys.executable, "-c", "print('purged')"]}


@pytest.fixture
def stores() -> Iterator[list[StateStore]]:
    opened: list[StateStore] = []
    yield opened
    for store in opened:
        store.close()


def make_app(
    tmp_path: Path, stores: list[StateStore], *, read_only: bool = False, snapshot: Snapshot | None = None
) -> OpsApp:
    """The sample dashboard with two configured actions, as `run_tui` builds it."""
    config = config_with(tmp_path, read_only=read_only, command=[RESTART_APP, PURGE])
    shown = snapshot or sample_snapshot()
    store = StateStore.in_dir(config.state_dir())
    stores.append(store)
    actions = Actions.from_config(config, store=store, snapshot=lambda: shown)
    commands = (*action_commands(actions, ME), silence_command(store, ME))
    return sample_app(shown, config=config, commands=commands, actions=actions)  # type: ignore[no-any-return]


def outcomes_of(seen: list[str]):  # type: ignore[no-untyped-def]
    def hook(message: Message) -> None:
        if isinstance(message, CommandOutcome):
            seen.append(message.outcome)

    return hook


async def settle(app: OpsApp, pilot: Any) -> None:
    await app.workers.wait_for_complete()
    await pilot.pause()


async def wait_for_runs(app: OpsApp, pilot: Any) -> None:
    assert app.actions is not None
    for run in list(app.actions.runs):
        await run.wait()
    await settle(app, pilot)
    app.read_audit()
    await settle(app, pilot)


async def test_the_key_on_a_row_shows_the_exact_plan_then_runs_it_into_the_actions_pane(  # type: ignore[no-untyped-def]
    tmp_path: Path, stores
) -> None:
    seen: list[str] = []
    app = make_app(tmp_path, stores)
    async with app.run_test(size=SMALL, message_hook=outcomes_of(seen)) as pilot:
        await pilot.pause()
        assert app.pane("processes").selected.name == "worker"  # the worst process is under the cursor
        await pilot.press("R")
        await settle(app, pilot)
        assert isinstance(app.screen, ConfirmScreen)
        assert app.actions is not None
        plan = await app.actions.plan("restart-app", actor=ME, args={"process.key": "pm2:worker"})
        assert app.screen.detail == "\n".join(plan.shown), "the dialog shows exactly what will run"
        assert app.screen.detail.startswith(f"{sys.executable} -c ") and app.screen.detail.split("\n")[0].endswith(
            " worker"
        )
        await pilot.press("y")
        await wait_for_runs(app, pilot)
        assert seen == ["ran"]

        await pilot.press("9")
        pane = app.pane("actions")
        table = app.query_one("#table-actions", KeyedTable)
        assert table.column_text("result")[0] == "✔ ok"
        assert table.column_text("action")[0] == "restart-app pm2:worker"
        output = pane.query_one(".log", Lines).plain.splitlines()
        assert output[0] == plan.shown[0], "what ran, then what it printed"
        assert sorted(output[-2:]) == ["restarting worker", "slow start"]
        assert pane.query_one(".log-title", Lines).plain.startswith("restart-app: ok in ")
    entry = app.actions.audit.recent(1)[-1]
    assert (entry.action, entry.result, entry.target, entry.confirmation) == (
        "restart-app",
        "ok",
        "pm2:worker",
        "pressed Yes in the TUI",
    )
    assert entry.actor == str(ME) and entry.actor.endswith("(tui)" if ME.tty else "(tui, no tty)")


async def test_no_at_the_confirmation_runs_nothing_and_is_audited(tmp_path: Path, stores) -> None:  # type: ignore[no-untyped-def]
    seen: list[str] = []
    app = make_app(tmp_path, stores)
    async with app.run_test(size=SMALL, message_hook=outcomes_of(seen)) as pilot:
        await pilot.pause()
        await pilot.press("R")
        await settle(app, pilot)
        await pilot.press("n")
        await settle(app, pilot)
        assert not isinstance(app.screen, ConfirmScreen)
    assert app.actions is not None and not app.actions.runs and seen == ["cancelled"]
    entry = app.actions.audit.recent(1)[-1]
    assert (entry.action, entry.result, entry.reason) == ("restart-app", "cancelled", "pressed No in the TUI")


async def test_a_dangerous_action_runs_only_with_its_name_typed(tmp_path: Path, stores) -> None:  # type: ignore[no-untyped-def]
    app = make_app(tmp_path, stores)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.pause()
        await pilot.press("X")
        await settle(app, pilot)
        screen = app.screen
        assert isinstance(screen, ConfirmScreen) and screen.question.typed == "purge-dead"
        yes = screen.query_one("#yes", Button)
        await pilot.press("y", "n")  # typed into the field: neither answers the question
        assert isinstance(app.screen, ConfirmScreen) and screen.query_one(Input).value == "yn"
        assert yes.disabled
        await pilot.press("enter")
        assert isinstance(app.screen, ConfirmScreen), "a wrong phrase confirms nothing"
        screen.query_one(Input).value = ""
        await pilot.press(*"purge-dead")
        assert not yes.disabled
        await pilot.press("enter")
        await wait_for_runs(app, pilot)
        assert not isinstance(app.screen, ConfirmScreen)
    assert app.actions is not None
    entry = app.actions.audit.recent(1)[-1]
    assert (entry.action, entry.result, entry.confirmation) == ("purge-dead", "ok", "typed the name in the TUI")
    assert entry.output == ("purged",)


async def test_read_only_refuses_every_way_in_and_audits_it(tmp_path: Path, stores) -> None:  # type: ignore[no-untyped-def]
    seen: list[str] = []
    app = make_app(tmp_path, stores, read_only=True)
    async with app.run_test(size=SMALL, message_hook=outcomes_of(seen)) as pilot:
        await pilot.pause()
        await pilot.press("R")  # a key
        await settle(app, pilot)
        assert not isinstance(app.screen, ConfirmScreen)
        app.run_command("action.purge-dead")  # the palette's way in
        await settle(app, pilot)
        # And past the guard altogether, as a bug in some view might: the actions refuse on their own.
        command = app.commands.get("action.restart-app")
        app._execute(command, app.command_context())
        await settle(app, pilot)
        assert "read-only" in list(app._notifications)[-1].message
    assert app.actions is not None and not app.actions.runs
    assert seen == ["refused", "refused", "ran"]  # "ran": the command was called, and refused by the actions
    refusals = app.actions.audit.recent(5)
    assert [(e.action, e.result) for e in refusals] == [
        ("restart-app", "refused"),
        ("purge-dead", "refused"),
        ("restart-app", "refused"),
    ]
    assert all("read-only mode" in (e.reason or "") for e in refusals)


async def test_past_the_dialog_nothing_runs_without_a_confirmation(tmp_path: Path, stores) -> None:  # type: ignore[no-untyped-def]
    app = make_app(tmp_path, stores)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.pause()
        app._execute(app.commands.get("action.restart-app"), app.command_context())
        await settle(app, pilot)
        assert "needs a confirmation first" in list(app._notifications)[-1].message
    assert app.actions is not None and not app.actions.runs
    assert app.actions.audit.recent(1)[-1].result == "refused"


async def test_row_actions_are_in_the_footer_and_help_of_their_pane_only(tmp_path: Path, stores) -> None:  # type: ignore[no-untyped-def]
    app = make_app(tmp_path, stores)
    async with app.run_test(size=(160, 24)) as pilot:
        await pilot.pause()

        def footer() -> set[str]:
            return {b.binding.description for b in app.screen.active_bindings.values() if b.enabled and b.binding.show}

        assert "restart-app" in footer() and "silence" not in footer()
        await pilot.press("8")
        assert "silence" in footer() and "restart-app" not in footer()
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = app.screen.query_one("#help-text", Lines).plain
        assert "R           Restart the app" in text and "z           Silence the alert" in text


async def test_silencing_an_alert_from_its_pane_works_in_read_only_mode(tmp_path: Path, stores) -> None:  # type: ignore[no-untyped-def]
    app = make_app(tmp_path, stores, read_only=True)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.pause()
        await pilot.press("8")
        alert = app.pane("alerts").selected
        await pilot.press("z")
        assert isinstance(app.screen, SilenceScreen)
        await pilot.press("2")  # one hour
        await settle(app, pilot)
        assert not isinstance(app.screen, SilenceScreen)
        assert "Silenced" in list(app._notifications)[-1].title
    assert app.actions is not None
    (made,) = active_silences(app.actions.audit.store)
    assert made.pattern == alert.key and made.created_by == str(ME)
    assert round(made.expires_at - made.created_at) == 3600
