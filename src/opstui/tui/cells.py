"""How figures look on screen: a style per level, text from systems made harmless, trends, keyed tables.

Every piece of text is a `Cell`, a (text, style) pair. Pairs compare by value, so a table or a line is
touched only when what it shows changed, and the styles name theme variables (`$status-critical`), so a
theme switch re-colours everything without a redraw of our own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from textual.content import Content
from textual.style import Style
from textual.widgets import DataTable, Static

from opstui.model import Level

Cell = tuple[str, str]
"""(text, style); the style uses theme variables, e.g. `$status-warning bold`."""
Line = tuple[Cell, ...]

STALE = "$status-stale"
_LEVEL_STYLE = {Level.OK: "$status-ok", Level.WARNING: "$status-warning", Level.CRITICAL: "$status-critical"}
_LEVEL_MARK = {Level.OK: "✔", Level.WARNING: "▲", Level.CRITICAL: "✖"}
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
_BARS = "▁▂▃▄▅▆▇█"


def clean(text: object) -> str:
    """Text from a system (names, errors, log lines) with control characters replaced.

    An escape sequence in a log line would otherwise reach the terminal and be executed by it; a tab or a
    newline would break the table's layout.
    """
    return _CONTROL.sub(lambda m: " " if m.group() in "\t\n\r" else "�", str(text).expandtabs(4))


def level_style(level: Level, *, stale: bool = False, strong: bool = False) -> str:
    """The style of a figure at `level`; a figure whose source failed is drawn in the stale colour."""
    if stale:
        return STALE
    if level is Level.OK:
        return ""
    return _LEVEL_STYLE[level] + (" bold" if strong else "")


def mark(level: Level) -> str:
    """A symbol for the level, so the state reads without colour (16 colours, colour blindness)."""
    return _LEVEL_MARK[level]


def status_style(level: Level) -> str:
    return _LEVEL_STYLE[level]


def to_content(cells: Sequence[Cell]) -> Content:
    return Content.assemble(*((clean(text), style) for text, style in cells))


def trend(values: Sequence[float], width: int, *, top: float | None = None) -> str:
    """A one-line sparkline of the newest values, scaled from zero to `top` (default: their maximum).

    Scaled from zero, not from the minimum as Textual's Sparkline is: a queue stuck at 162 must look full,
    not flat at the bottom, and memory steady at 62% must not look like a mountain range.
    """
    if not values or width <= 0:
        return ""
    step = max(1, -(-len(values) // width))  # ceil: each column is the worst of `step` points
    columns: list[float] = []
    end = len(values)
    while end > 0 and len(columns) < width:
        columns.append(max(values[max(0, end - step) : end]))
        end -= step
    columns.reverse()
    ceiling = max(top or 0.0, *columns)
    if ceiling <= 0:
        return _BARS[0] * len(columns)
    return "".join(_BARS[min(len(_BARS) - 1, int(v / ceiling * (len(_BARS) - 1) + 0.5))] for v in columns)


class TableCell:
    """A table cell's content that tells the table its width.

    DataTable sizes its columns by measuring each cell through Rich, and Textual's Content does not answer
    that question (every cell would count as one column wide). The styles still resolve against the
    current theme when the cell is drawn.
    """

    __slots__ = ("content",)

    def __init__(self, content: Content) -> None:
        self.content = content

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield from self.content.render_segments(Style(), "\n")

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement(self.content.cell_length, self.content.cell_length)


def table_cell(cell: Cell) -> TableCell:
    return TableCell(to_content((cell,)))


class Lines(Static):
    """Lines of cells; updated only when what they say changed, hidden when there is nothing to say."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__("", id=id, classes=classes, markup=False)
        self._shown: tuple[Line, ...] | None = None

    def show(self, lines: Sequence[Sequence[Cell]]) -> None:
        key = tuple(tuple(line) for line in lines)
        if key == self._shown:
            return
        # Lines of the same lengths take the same room: repaint without asking for a new layout.
        same_shape = self._shown is not None and [_width(line) for line in self._shown] == [
            _width(line) for line in key
        ]
        self._shown = key
        self.set_class(not key, "-empty")
        self.update(Content("\n").join(to_content(line) for line in key), layout=not same_shape)

    @property
    def plain(self) -> str:
        """What the lines say, without styles (what a person reads)."""
        return "\n".join("".join(clean(text) for text, _ in line) for line in self._shown or ())


def _width(line: Line) -> int:
    return sum(len(text) for text, _ in line)


class KeyedTable(DataTable[TableCell]):
    """A table diffed by row key: only changed cells are touched, and the cursor stays on its row.

    Rows that disappear are removed and new ones added; only when the order of rows changes (e.g. the
    biggest processes swap places) is the table rebuilt, once. Never cleared and refilled every tick:
    that resets the cursor the user is standing on and re-measures every cell.
    """

    def __init__(self, columns: Sequence[tuple[str, str]], *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False, show_row_labels=False)
        self._columns = list(columns)
        self._column_keys = [key for key, _ in columns]
        self._cells: dict[str, tuple[Cell, ...]] = {}
        self.items: dict[str, Any] = {}
        """The model item behind each row, for commands that act on the row under the cursor."""

    def on_mount(self) -> None:
        for key, label in self._columns:
            self.add_column(label, key=key)

    @property
    def cursor_key(self) -> str | None:
        if not self.row_count:
            return None
        return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value

    def show_rows(self, rows: Sequence[tuple[str, Sequence[Cell], Any]]) -> None:
        """Show `rows` as (key, cells, item), in this order."""
        cursor = self.cursor_key
        wanted: dict[str, tuple[tuple[Cell, ...], Any]] = {}
        for key, cells, item in rows:
            # A key seen twice (two sources naming a process alike) shows once rather than crash the table.
            wanted.setdefault(key, (tuple(cells), item))
        self.items = {key: item for key, (_, item) in wanted.items()}
        for key in [k for k in self._cells if k not in wanted]:
            self.remove_row(key)
            del self._cells[key]
        for key, (new, _) in wanted.items():
            old = self._cells.get(key)
            if old is None:
                self.add_row(*(table_cell(c) for c in new), key=key)
            elif old != new:
                for column, before, after in zip(self._column_keys, old, new, strict=True):
                    if before != after:
                        self.update_cell(key, column, table_cell(after), update_width=True)
            self._cells[key] = new
        if [row.key.value for row in self.ordered_rows] != list(wanted):
            self.clear()
            for key in wanted:
                self.add_row(*(table_cell(c) for c in self._cells[key]), key=key)
        if cursor is not None and cursor in self._cells:
            self.move_cursor(row=self.get_row_index(cursor), scroll=False)
        # Column titles over nothing are noise; the pane says why there is nothing.
        self.set_class(not wanted, "-empty")

    def column_text(self, column: str) -> list[str]:
        """The plain text of one column, top to bottom (what a person reads in it)."""
        index = self._column_keys.index(column)
        return [clean(self._cells[str(row.key.value)][index][0]) for row in self.ordered_rows]
