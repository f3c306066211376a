"""The `[actions]` section: recovery actions people run from the TUI, the CLI and the bot.

Shape: `[actions]` holds what applies to every action (default timeout, kill grace, output kept, audit
retention); each kind has its own array of tables, `[[actions.command]]`, `[[actions.script]]` and
`[[actions.http]]`. A kind per table (rather than one `[[actions]]` list with a `kind =` key) lets each kind
forbid the keys it does not have, so `url` on a command or `command` on an http action is a typo caught at
load with the file, line and key, not a union error; and TOML cannot hold both an `[actions]` table of
defaults and an `[[actions]]` array. Each built-in action has a table named after it (`[actions.restart]`,
`[actions.queue-move]`), which only tunes or turns off what works without it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, ValidationInfo, field_validator, model_validator

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


BUILTIN_KEYS: dict[str, str] = {
    "restart": "r",
    "stop": "s",
    "start": "u",
    "queue-move": "m",
    "queue-delete": "D",
    "lock-release": "l",
}
"""The built-in actions by name, with their default TUI keys (none of the TUI's own: ? p q tab + - 1-9)."""
DEAD_LETTER = "{key}:opstui-dead-letter:{time}"
_TEMPLATE_FIELD = re.compile(r"\{([^{}]*)\}")


def _dead_letter_template(value: str) -> str:
    unknown = sorted({name for name in _TEMPLATE_FIELD.findall(value) if name not in ("key", "time")})
    if unknown:
        raise ValueError(f"unknown placeholder {{{unknown[0]}}}; the dead-letter key may use {{key}} and {{time}}")
    if not value.replace("{key}", "").replace("{time}", ""):
        raise ValueError("the dead-letter key needs more than placeholders, e.g. '{key}:opstui-dead-letter:{time}'")
    return value


class BuiltinActionConfig(Section):
    """`[actions.<name>]` for a built-in action: every option has a default, so the table is only for changes."""

    enabled: bool = True
    """false: the action is offered nowhere (not in the TUI, `opstui action` or the bot)."""
    key: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_+-]*$")
    """The TUI key; default: the built-in's own (restart r, stop s, start u, queue-move m, queue-delete D,
    lock-release l); "" for none."""
    rows: list[str] = Field(default_factory=list)
    """Only on the rows with these names (glob patterns allowed); default: every row it can act on."""
    confirm: bool = True
    """Ask before running. queue-delete always wants the queue's name typed, and lock-release the lock's
    name for a lock that is not stale, whatever this says."""
    timeout: Duration | None = Field(default=None, gt=0)
    """Stop waiting for it after this long; default: `actions.timeout`."""


class QueueMoveConfig(BuiltinActionConfig):
    dead_letter: Annotated[str, AfterValidator(_dead_letter_template)] = Field(default=DEAD_LETTER, min_length=1)
    """Where a queue's waiting jobs are moved: {key} is the key that held them, {time} the moment of the move
    in UTC (20261122T044500). A key that exists already gets the jobs added after its own."""


class QueueDeleteConfig(BuiltinActionConfig):
    dumps: Path | None = None
    """The directory for the dump of the jobs written before they are deleted; default: `dumps` in the
    state directory."""

    @field_validator("dumps")
    @classmethod
    def _expand_dumps(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    @model_validator(mode="after")
    def _always_typed(self) -> QueueDeleteConfig:
        if not self.confirm:
            raise ValueError("queue-delete always asks for the queue's name to be typed; remove confirm = false")
        return self


class ActionsConfig(Section):
    # The built-ins' tables are named after the actions, which have dashes (`[actions.queue-move]`).
    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)

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
    # The built-in actions (opstui.actions.builtin): restart, stop and start a process through its manager,
    # move a queue's waiting jobs aside or delete them after a dump, release a lock.
    restart: BuiltinActionConfig = Field(default_factory=BuiltinActionConfig)
    stop: BuiltinActionConfig = Field(default_factory=BuiltinActionConfig)
    start: BuiltinActionConfig = Field(default_factory=BuiltinActionConfig)
    queue_move: QueueMoveConfig = Field(default_factory=QueueMoveConfig, alias="queue-move")
    queue_delete: QueueDeleteConfig = Field(default_factory=QueueDeleteConfig, alias="queue-delete")
    lock_release: BuiltinActionConfig = Field(default_factory=BuiltinActionConfig, alias="lock-release")

    def builtin(self, name: str) -> BuiltinActionConfig:
        """The settings of the built-in action `name` (`queue-move` -> `[actions.queue-move]`)."""
        settings: BuiltinActionConfig = getattr(self, name.replace("-", "_"))
        return settings

    def builtin_key(self, name: str) -> str | None:
        """The key the built-in `name` is bound to: its own, the configured one, or None ("")."""
        key = self.builtin(name).key
        return BUILTIN_KEYS[name] if key is None else key or None

    @model_validator(mode="after")
    def _unique(self) -> ActionsConfig:
        # Reported as the two places in the file, since the error for this whole section has no line of its own.
        for attribute in ("name", "key"):
            seen: dict[str, str] = {}
            for name in BUILTIN_KEYS:
                value = name if attribute == "name" else self.builtin_key(name)
                if self.builtin(name).enabled and value is not None:
                    seen[value] = f"[actions.{name}]"
            for kind in ("command", "script", "http"):
                for index, action in enumerate(getattr(self, kind)):
                    value, where = getattr(action, attribute), f"actions.{kind}[{index}]"
                    if value is not None and value in seen:
                        other = seen[value]
                        if other.startswith("[actions."):
                            raise ValueError(
                                f"{where} has {attribute} = '{value}', which is the built-in {other[9:-1]}'s; pick "
                                f"another {attribute}, or change the built-in's in {other}"
                                + (" (enabled = false turns it off)" if attribute == "name" else "")
                            )
                        raise ValueError(f"{other} and {where} both have {attribute} = '{value}'; each needs its own")
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
