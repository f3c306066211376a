"""The screens: the dashboard, the help screen, and the confirmation every mutating command goes through."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, DataTable, Footer, Input, Label

from opstui.model import Level
from opstui.tui.cells import STALE, Cell, Lines, mark, status_style
from opstui.tui.commands import Command, Question
from opstui.tui.header import HeaderBar, PaneBar
from opstui.tui.panes import Pane

if TYPE_CHECKING:
    from opstui.tui.app import OpsApp

FULL_SIZE = (120, 40)
"""From this many columns and rows every pane shows at once; below, one pane at a time with a tab bar."""
COLUMNS = (
    ("left", ("processes", "queues", "alerts", "activity")),
    ("right", ("memory", "health", "locks", "dispatch", "actions")),
)
"""Where each pane sits at full size: the wide tables, the alerts' sentences and the log lines on the left,
the narrower tables and summaries and the recovery actions' runs on the right. A new pane is placed by
adding its id here."""


class Dashboard(Screen[None], inherit_bindings=False):
    """The main screen. It keeps no bindings of its own (not even Textual's tab = next widget): every key is
    a command of the app's registry, so `tab` moves between panes and can be remapped like any other."""

    AUTO_FOCUS = None

    def __init__(self, panes: Sequence[Pane]) -> None:
        super().__init__(id="dashboard")
        self.panes = panes
        self.header = HeaderBar()
        self.panebar = PaneBar()

    @property
    def ops(self) -> OpsApp:
        from opstui.tui.app import OpsApp

        assert isinstance(self.app, OpsApp)
        return self.app

    def compose(self) -> ComposeResult:
        yield self.header
        yield self.panebar
        by_id = {pane.pane_id: pane for pane in self.panes}
        with Container(id="panes"):
            for column, pane_ids in COLUMNS:
                with Vertical(id=f"column-{column}", classes="column"):
                    yield from (by_id[pane_id] for pane_id in pane_ids if pane_id in by_id)
        yield Footer()

    def on_resize(self, event: events.Resize) -> None:
        self.ops.fit_layout(event.size.width >= FULL_SIZE[0] and event.size.height >= FULL_SIZE[1])

    def on_screen_resume(self) -> None:
        # Back from the help, the palette or a confirmation: nothing was drawn meanwhile.
        self.ops.render_now()

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        for node in event.widget.ancestors_with_self:
            if isinstance(node, Pane):
                self.ops.activate_pane(node.pane_id, focus=False)
                return

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "table-processes":
            # The logs pane shows the errors of the process under this cursor.
            self.ops.render_pane("activity")
        elif event.data_table.id == "table-alerts":
            self.ops.render_pane("alerts")  # the alert under the cursor, in full


class HelpScreen(ModalScreen[None]):
    """Every key and command, from the same registry as the bindings, the footer and the palette."""

    BINDINGS: ClassVar = [
        Binding("escape,question_mark,q", "dismiss", "Close", show=True),
    ]

    def __init__(self, commands: Sequence[Command], keys: Mapping[str, list[str]], *, read_only: bool) -> None:
        super().__init__(id="help")
        self.commands = commands
        self.keys = keys
        self.read_only = read_only

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-body"):
            yield Lines(id="help-text")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#help-text", Lines).show(self.lines())
        self.query_one("#help-body").focus()

    def lines(self) -> list[list[Cell]]:
        out: list[list[Cell]] = [
            [("opstui: what the keys do", "bold")],
            [("Moving between panes and rows needs no mouse: tab and shift+tab, the numbers, the arrow keys.", "")],
            [("ctrl+p opens the command palette (type 'theme' or 'refresh'); ctrl+q or q quits.", "")],
            [],
        ]
        groups: dict[str, list[Command]] = {}
        for command in self.commands:
            groups.setdefault(command.group, []).append(command)
        for group, commands in groups.items():
            out.append([(group, "bold $primary")])
            for command in commands:
                keys = ", ".join(_key_label(k) for k in self.keys.get(command.id, [])) or "palette"
                note = "  (read-only: refused)" if command.mutating and self.read_only else ""
                out.append(
                    [(f"  {keys:<12}", "bold"), (f"{command.title:<30}", ""), (f" {command.id}", STALE), (note, STALE)]
                )
            out.append([])
        if "Actions" in groups:
            out += [
                [("A row's key shows exactly what will run and asks first; a dangerous action wants a name", "")],
                [("typed. Output, results and refusals: the Actions pane and `opstui audit`.", "")],
                [("Silencing an alert changes only opstui's notifications, so it works in read-only mode.", STALE)],
                [],
            ]
        out += [
            [("Colours and symbols", "bold $primary")],
            [
                (f"  {mark(Level.OK)} ok", status_style(Level.OK)),
                (f"   {mark(Level.WARNING)} needs a look", status_style(Level.WARNING)),
                (f"   {mark(Level.CRITICAL)} needs you now", status_style(Level.CRITICAL)),
                ("   dimmed: its source failed;", STALE),
            ],
            [("  ", ""), ("the value is its last good one, and the pane says how old it is.", STALE)],
            [],
            [('Remap a key in the config: [tui.keys] pause = "space" (the ids are in grey above).', STALE)],
        ]
        return out


def _key_label(key: str) -> str:
    return {"question_mark": "?", "plus": "+", "minus": "-", "shift+tab": "shift+tab"}.get(key, key)


class ConfirmScreen(ModalScreen[bool | str]):
    """Asks before a mutating command runs, showing exactly what will run; No is the default.

    For a dangerous one the person types a phrase (the queue's or the lock's name) and Yes stays off until
    it matches; the answer is then the typed text, which the guard checks again.
    """

    BINDINGS: ClassVar = [
        Binding("escape,n", "answer(False)", "No"),
        Binding("y", "answer(True)", "Yes"),
    ]

    def __init__(self, title: str, question: Question) -> None:
        super().__init__(id="confirm")
        self.title_text = title
        self.question = question
        self.detail = question.detail

    def compose(self) -> ComposeResult:
        phrase = self.question.typed
        with Vertical(id="confirm-box"):
            yield Label(self.question.title or self.title_text, id="confirm-title", markup=False)
            yield Label(self.detail, id="confirm-detail", markup=False)
            if phrase is not None:
                yield Label(f"To confirm, type {phrase!r}:", id="confirm-ask", markup=False)
                yield Input(placeholder=phrase, id="confirm-typed")
            with Horizontal(id="confirm-buttons"):
                yield Button(
                    "Yes (y)" if phrase is None else "Yes", variant="error", id="yes", disabled=phrase is not None
                )
                yield Button("No (n)" if phrase is None else "No (esc)", variant="primary", id="no")

    def on_mount(self) -> None:
        self.query_one("#confirm-typed" if self.question.typed is not None else "#no").focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.query_one("#yes", Button).disabled = event.value.strip() != self.question.typed

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_answer(True)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_answer(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        if not answer:
            self.dismiss(False)
        elif self.question.typed is None:
            self.dismiss(True)
        else:
            typed = self.query_one("#confirm-typed", Input).value.strip()
            if typed == self.question.typed:
                self.dismiss(typed)
            else:
                self.notify(f"Type {self.question.typed!r} exactly to confirm, or press esc", markup=False)
