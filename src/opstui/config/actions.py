"""The `[actions]` section: recovery actions people run from the TUI, the CLI and the bot.

Shape: `[actions]` holds what applies to every action (default timeout, kill grace, output kept, audit
retention); each kind has its own array of tables, `[[actions.command]]`, `[[actions.script]]` and
`[[actions.http]]`. A kind per table (rather than one `[[actions]]` list with a `kind =` key) lets each kind
forbid the keys it does not have, so `url` on a command or `command` on an http action is a typo caught at
load with the file, line and key, not a union error; and TOML cannot hold both an `[actions]` table of
defaults and an `[[actions]]` array.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from opstui.config._base import Duration, PositiveDuration, Secret, SecretUrl, Section

Scope = Literal["global", "process", "queue", "lock"]

ROW_FIELDS: dict[str, tuple[str, ...]] = {
    "process": ("name", "key", "manager", "pid"),
    "queue": ("name", "key", "kind"),
    "lock": ("name", "key", "holder", "state"),
}
"""The fields of a row an action may use as `{scope.field}` arguments, per scope."""

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
PLACEHOLDER = re.compile(r"\{(?P<scope>process|queue|lock)\.(?P<field>[A-Za-z_]+)\}")
_MODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,63}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ActionConfig(Section):
    """What every kind of action has."""

    name: str = Field(pattern=NAME_PATTERN)
    """How people call it: `opstui action run NAME`, `/recover NAME`; letters, digits, `_ . -`."""
    description: str = ""
    key: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_+-]+$")
    """The TUI key that runs it, e.g. `R` or `ctrl+r`."""
    scope: Scope = "global"
    """global, or the kind of row it acts on: process, queue or lock (the TUI offers it on that row)."""
    rows: list[str] = Field(default_factory=list)
    """Only on the rows with these names (glob patterns allowed); default: every row of its scope."""
    confirm: bool = True
    """Ask before running (a dangerous action always asks for its name to be typed)."""
    dangerous: bool = False
    """Needs the action's name typed to run (or `--confirm NAME` on the command line)."""
    timeout: Duration | None = Field(default=None, gt=0)
    """Stop it after this long; default: `actions.timeout`."""

    @model_validator(mode="after")
    def _coherent(self) -> ActionConfig:
        if self.rows and self.scope == "global":
            raise ValueError("rows = [...] picks rows of a scope: set scope = 'process', 'queue' or 'lock' too")
        if self.dangerous and not self.confirm:
            raise ValueError(
                "a dangerous action always asks for its name to be typed; remove confirm = false or dangerous = true"
            )
        return self


class ProcessActionConfig(ActionConfig):
    """What the kinds that start a program have: where it runs and its environment."""

    cwd: Path | None = None
    """The working directory; relative to the config file's directory. Default: that directory."""
    env: dict[str, Secret] = Field(default_factory=dict)
    """Extra environment; every value is a secret: never shown, and masked wherever it appears in output."""
    public_env: dict[str, str] = Field(default_factory=dict)
    """Extra environment that is not secret and may be shown (`NODE_ENV = "production"`)."""

    @field_validator("cwd")
    @classmethod
    def _expand_cwd(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    @field_validator("env", "public_env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not _ENV_NAME.fullmatch(name):
                raise ValueError(f"'{name}' is not an environment variable name (letters, digits and _)")
        return value


class CommandActionConfig(ProcessActionConfig):
    command: list[str] = Field(min_length=1)
    """The program and its arguments, as a list: no shell ever runs it. An argument that is exactly
    `{process.name}` (or another field of the action's row) is replaced by that row's value."""

    @field_validator("command")
    @classmethod
    def _placeholders(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if not value[0]:
            raise ValueError("the program (the first element) is empty")
        if "scope" in info.data:  # else the scope itself was wrong, and that is the error to show
            check_placeholders(value, info.data["scope"])
        return value


class ScriptActionConfig(ProcessActionConfig):
    script: str = Field(min_length=1)
    """The script to run, e.g. `./recovery.sh`; it must be executable (it runs without a shell)."""
    modes: list[str] = Field(min_length=1)
    """Its modes; the person running it picks one, and it becomes the script's first argument."""
    modes_with_value: list[str] = Field(default_factory=list)
    """Modes that take one value after them from the person running it, e.g. `company` for
    `./recovery.sh company 42`; the value may hold only letters, digits and `. _ : @ + -`."""

    @field_validator("modes", "modes_with_value")
    @classmethod
    def _safe_modes(cls, value: list[str]) -> list[str]:
        for mode in value:
            if not _MODE.fullmatch(mode):
                raise ValueError(f"mode '{mode}' may hold only letters, digits and . _ : @ + - (and not start with -)")
        if len(set(value)) != len(value):
            raise ValueError("a mode is listed twice")
        return value

    @model_validator(mode="after")
    def _modes_known(self) -> ScriptActionConfig:
        both = set(self.modes) & set(self.modes_with_value)
        if both:
            raise ValueError(f"modes and modes_with_value both list {', '.join(sorted(both))}; list each mode once")
        return self


class HttpActionConfig(ActionConfig):
    url: SecretUrl = Field(pattern=r"^https?://")
    """The endpoint, e.g. `http://127.0.0.1:3000/api/brain/cron/run-batch`."""
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    headers: dict[str, Secret] = Field(default_factory=dict)
    """Request headers; every value is a secret (`Authorization = "Bearer ${BATCH_TOKEN}"`)."""
    body: dict[str, Any] | list[Any] | None = None
    """A body sent as JSON (a TOML table or array), with `Content-Type: application/json`."""
    expect_status: list[int] = Field(default_factory=list)
    """The statuses that mean it worked; default: any 2xx."""

    @field_validator("method", mode="before")
    @classmethod
    def _upper_method(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


class ActionsConfig(Section):
    timeout: PositiveDuration = Field(default=60.0, gt=0)
    """How long an action may run before its whole process group is stopped, unless it sets its own."""
    kill_grace: Duration = Field(default=5.0, ge=0)
    """After the timeout: SIGTERM to the process group, then SIGKILL this much later if anything is left."""
    output_lines: int = Field(default=1000, ge=10, le=100_000)
    """Lines of output each run keeps in memory for the screen (the audit log keeps the last few)."""
    audit_keep: Duration = Field(default=90 * 86400.0, gt=0)
    """How long audit log entries are kept."""
    command: list[CommandActionConfig] = Field(default_factory=list)
    script: list[ScriptActionConfig] = Field(default_factory=list)
    http: list[HttpActionConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> ActionsConfig:
        # Reported as the two places in the file, since the error for this whole section has no line of its own.
        for attribute in ("name", "key"):
            seen: dict[str, str] = {}
            for kind in ("command", "script", "http"):
                for index, action in enumerate(getattr(self, kind)):
                    value, where = getattr(action, attribute), f"actions.{kind}[{index}]"
                    if value is not None and value in seen:
                        raise ValueError(
                            f"{seen[value]} and {where} both have {attribute} = '{value}'; each needs its own"
                        )
                    if value is not None:
                        seen[value] = where
        return self


def check_placeholders(argv: list[str], scope: str) -> None:
    """Placeholders must be whole arguments naming a field of the action's own scope."""
    for index, arg in enumerate(argv):
        for match in PLACEHOLDER.finditer(arg):
            where = f"argument {index + 1} ({arg!r})"
            if match.group(0) != arg:
                raise ValueError(
                    f"{where}: a placeholder must be a whole argument, so its value can never be split or "
                    f"joined into something else; write it as its own list element, e.g. "
                    f'["--name", "{match.group(0)}"]'
                )
            if match.group("scope") != scope:
                raise ValueError(
                    f"{where} uses a {match.group('scope')} field but the action's scope is {scope}; "
                    f'set scope = "{match.group("scope")}"'
                )
            fields = ROW_FIELDS[scope]
            if match.group("field") not in fields:
                known = ", ".join(f"{{{scope}.{f}}}" for f in fields)
                raise ValueError(f"{where}: unknown field; a {scope} row has {known}")
