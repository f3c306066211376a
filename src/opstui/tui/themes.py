"""Themes from files: each `themes/*.toml` is checked colour by colour, then registered as a Textual theme.

TOML, like the config: a format opstui already reads with the standard library (no YAML parser to add),
that allows comments, and whose errors the config loader already reports with file, line and key.
A theme has Textual's colours plus opstui's four status colours, which become the theme variables
`$status-ok`, `$status-warning`, `$status-critical` and `$status-stale` that the stylesheet and the cells use.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, Field
from textual.color import Color, ColorParseError
from textual.css.constants import VALID_STYLE_FLAGS
from textual.theme import Theme

import opstui
from opstui.config import Config, ConfigError, Section
from opstui.config._load import read_toml, validate

DEFAULT_THEME = "opstui-dark"
ANSI_THEME = "opstui-ansi"
"""Chosen by itself on a 16-colour terminal when the user chose no theme: hex colours would be approximated."""

STATUS_DEFAULTS = {
    # For Textual's own fallback theme, used only when no opstui theme could be loaded; palette colours suit it.
    "status-ok": "ansi_green",
    "status-warning": "ansi_yellow",
    "status-critical": "ansi_red",
    "status-stale": "ansi_bright_black",
}
_ALPHA = re.compile(r"^\d{1,3}%$")


def _colour(value: str) -> str:
    try:
        Color.parse(value)
    except ColorParseError as exc:
        hint = f"; did you mean '{exc.suggested_color}'?" if exc.suggested_color else ""
        raise ValueError(f"'{value}' is not a colour{hint}") from None
    return value


def _variable(name: str, value: str) -> None:
    """Textual's variables are colours (with an optional `NN%` alpha) or, for `*-text-style`, style words."""
    words = value.split()
    if name.endswith("text-style"):
        bad = [w for w in words if w not in VALID_STYLE_FLAGS]
        if bad or not words:
            raise ValueError(f"variables.{name}: '{value}' is not a text style (e.g. 'bold', 'none')")
        return
    if not 1 <= len(words) <= 2 or (len(words) == 2 and not _ALPHA.match(words[1])):
        raise ValueError(f"variables.{name}: '{value}' is not a colour (write '#rrggbb' or '#rrggbb 50%')")
    try:
        _colour(words[0])
    except ValueError as exc:
        raise ValueError(f"variables.{name}: {exc}") from None


Colour = Annotated[str, AfterValidator(_colour)]


class StatusColours(Section):
    ok: Colour
    warning: Colour
    critical: Colour
    stale: Colour
    """A figure whose source failed: its last good value, shown with its age."""


class ThemeFile(Section):
    """One theme file; unknown keys are errors, like in the config."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    dark: bool = True
    ansi: bool = False
    """Only terminal palette colours (`ansi_*`): the terminal's own palette decides what they look like."""
    primary: Colour
    secondary: Colour | None = None
    accent: Colour | None = None
    warning: Colour | None = None
    error: Colour | None = None
    success: Colour | None = None
    foreground: Colour | None = None
    background: Colour | None = None
    surface: Colour | None = None
    panel: Colour | None = None
    boost: Colour | None = None
    status: StatusColours
    variables: dict[str, str] = Field(default_factory=dict)
    """Textual's own theme variables, e.g. `block-cursor-background`."""

    def to_theme(self) -> Theme:
        for name, value in self.variables.items():
            _variable(name, value)
        variables = {
            **self.variables,
            "status-ok": self.status.ok,
            "status-warning": self.status.warning,
            "status-critical": self.status.critical,
            "status-stale": self.status.stale,
        }
        if self.ansi:
            # Textual's screen CSS uses these under :ansi and an ANSI theme does not derive them.
            variables.setdefault("ansi-background", "ansi_default")
            variables.setdefault("ansi-foreground", "ansi_default")
        theme = Theme(
            name=self.name,
            primary=self.primary,
            secondary=self.secondary,
            accent=self.accent,
            warning=self.warning,
            error=self.error,
            success=self.success,
            foreground=self.foreground,
            background=self.background,
            surface=self.surface,
            panel=self.panel,
            boost=self.boost,
            dark=self.dark,
            ansi=self.ansi,
            variables=variables,
        )
        # Derives every shade; a colour Textual cannot use would otherwise end the app on the switch.
        theme.to_color_system().generate()
        return theme


@dataclass
class Themes:
    """The themes found, and what was wrong with the files that could not be used."""

    themes: dict[str, Theme] = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    broken: set[str] = field(default_factory=set)
    """The file names (without .toml) of the files that could not be used."""


def shipped_themes_dir() -> Path:
    """`opstui/themes` inside an installed wheel; the repository's `themes/` in a source checkout."""
    package = Path(opstui.__file__).parent
    installed = package / "themes"
    return installed if installed.is_dir() else package.parent.parent / "themes"


def theme_dirs(config: Config) -> list[Path]:
    """Shipped themes first, then the user's (a user theme of the same name wins)."""
    from platformdirs import user_config_path

    dirs = [shipped_themes_dir(), user_config_path("opstui", appauthor=False) / "themes"]
    if config.path is not None:
        dirs.append(config.path.parent / "themes")
    unique: list[Path] = []
    for path in dirs:
        if path.resolve() not in (p.resolve() for p in unique):
            unique.append(path)
    return unique


def load_theme(path: Path) -> Theme:
    """One theme file as a Textual theme; raises ConfigError naming the file, line, key and problem."""
    text, data = read_toml(path)
    data.setdefault("name", path.stem)
    spec = validate(ThemeFile, data, file=str(path), text=text)
    try:
        return spec.to_theme()
    except (ValueError, ColorParseError) as exc:
        raise ConfigError(str(exc), file=str(path)) from None


def load_themes(dirs: Iterable[Path]) -> Themes:
    found = Themes()
    for directory in dirs:
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob("*.toml")):
            try:
                theme = load_theme(path)
            except ConfigError as exc:
                found.problems.append(str(exc))
                found.broken.add(path.stem)
                continue
            found.themes[theme.name] = theme
            found.paths[theme.name] = path
    return found


def choose_theme(found: Themes, requested: str | None, *, colours: int | None) -> tuple[str, str | None]:
    """The theme to start with, and a message for the user when it is not the one they asked for.

    `requested` None means "the default": opstui-dark, or opstui-ansi when the terminal has only 16 colours.
    The message also carries every broken theme file, so the user gets one notification, not several.
    """
    wanted = requested
    if wanted is None:
        wanted = ANSI_THEME if colours is not None and colours <= 16 else DEFAULT_THEME
    problems = list(found.problems)
    if wanted in found.themes:
        chosen = wanted
    else:
        chosen = DEFAULT_THEME if DEFAULT_THEME in found.themes else "textual-dark"
        if requested is not None and requested not in found.broken:
            known = ", ".join(sorted(found.themes)) or "none"
            problems.append(f"there is no theme '{requested}'; themes found: {known}")
    if not problems:
        return chosen, None
    problems.append(f"using the theme {chosen}")
    return chosen, "\n".join(problems)
