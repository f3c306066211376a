"""Config sections for alerting: the rules and their thresholds, Telegram delivery, and the daily report."""

from __future__ import annotations

import re
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ByteSize, ConfigDict, Field, PlainSerializer, field_validator, model_validator

from opstui.config._base import Duration, PositiveDuration, Secret, Section

LevelName = Literal["warning", "critical"]
Bytes = Annotated[ByteSize, PlainSerializer(lambda size: size.human_readable(separator=""), when_used="json")]
"""A size written like "512MiB" or "2GB" (or a plain number of bytes)."""


def _known_timezone(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone '{value}'; use an IANA name such as 'Europe/Berlin'") from None
    return value


class RuleConfig(Section):
    """What every rule has: whether it runs, how long a problem must last, and what it ignores."""

    # `for` is a Python keyword; the TOML key is `for`, the attribute `for_`.
    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)

    enabled: bool = True
    for_: Duration = Field(default=0.0, alias="for")
    """How long the condition must hold before the alert fires (it is pending until then)."""
    failures: int = Field(default=1, ge=1)
    """How many consecutive failing checks before it fires (both this and `for` must be met)."""
    successes: int | None = Field(default=None, ge=1)
    """Consecutive good checks before a firing alert resolves; default: alerts.successes."""
    ignore: list[str] = Field(default_factory=list)
    """Names (glob patterns) of processes, queues, locks, ... this rule leaves alone."""


class LevelledRule(RuleConfig):
    level: LevelName = "critical"


class SourceDownRule(LevelledRule):
    failures: int = Field(default=2, ge=1)


class ProcessDownRule(LevelledRule):
    for_: Duration = Field(default=30.0, alias="for")


class RestartLoopRule(LevelledRule):
    restarts: int = Field(default=3, ge=1)
    within: Duration = Field(default=600.0, gt=0)


class MemoryRule(RuleConfig):
    for_: Duration = Field(default=120.0, alias="for")
    host_warning: float = Field(default=80.0, gt=0, le=100)
    host_critical: float = Field(default=95.0, gt=0, le=100)
    process: Bytes | None = None
    """Resident memory above which any process is a warning; off by default."""
    processes: dict[str, Bytes] = Field(default_factory=dict)
    """Per-process limits by name, e.g. `{ api = "512MiB" }`; these override `process`."""
    redis_warning: float = Field(default=90.0, gt=0, le=100)
    """Percent of Redis `maxmemory` (only for servers that have one)."""


class QueueDepthRule(RuleConfig):
    for_: Duration = Field(default=60.0, alias="for")
    warning: int | None = Field(default=100, ge=1)
    critical: int | None = Field(default=1000, ge=1)
    """Used for queues whose own config sets no thresholds."""


class QueueGrowingRule(LevelledRule):
    for_: Duration = Field(default=600.0, alias="for")
    level: LevelName = "warning"
    min_growth: float = Field(default=1.0, gt=0)
    """Jobs per minute; a queue growing at least this fast for `for` fires."""


class InactiveRule(LevelledRule):
    level: LevelName = "warning"
    max_age: Duration = Field(default=900.0, gt=0)
    """Used for activity sources that set no max_age of their own."""


class LockRule(RuleConfig):
    for_: Duration = Field(default=30.0, alias="for")
    expect_held: list[str] = Field(default_factory=list)
    """Locks (names or glob patterns) that must always be held; free is then a warning."""


class DispatchRule(RuleConfig):
    settle: Duration = 60.0
    """A run is judged once no event arrived for this long (counts disagree while it is still sending)."""


class HealthRule(LevelledRule):
    failures: int = Field(default=3, ge=1)


class ChecksRule(RuleConfig):
    """Backups, required environment variables and other yes/no checks: their own level is the alert's."""


class MaintenanceWindow(Section):
    name: str = Field(min_length=1)
    cron: str
    """When the window opens, as a crontab expression: minute hour day month weekday."""
    duration: Duration = Field(gt=0)
    timezone: str | None = None
    """IANA timezone of the cron expression; default: general.timezone."""
    match: list[str] = Field(default_factory=lambda: ["*"])
    """Alerts it mutes: glob patterns over the alert key, rule or subject; default: everything."""

    _timezone = field_validator("timezone")(_known_timezone)

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value, timezone="UTC")
        except ValueError as exc:
            raise ValueError(
                f"'{value}' is not a crontab expression ({exc}); write it like '0 3 * * *' "
                "(minute hour day month weekday)"
            ) from None
        return value


class AlertsConfig(Section):
    enabled: bool = True
    successes: int = Field(default=2, ge=1)
    """Consecutive good checks before a firing alert resolves."""
    flap_window: int = Field(default=20, ge=2)
    flap_changes: int = Field(default=6, ge=2)
    """An alert whose condition changes this often within the last flap_window checks is flapping."""
    flap_fires: int = Field(default=3, ge=2)
    flap_period: Duration = Field(default=3600.0, gt=0)
    """An alert that fires flap_fires times within flap_period is flapping too."""
    flap_quiet: Duration = 600.0
    """A flapping alert is held firing and resolves only once its condition has been good this long."""
    group_window: Duration = 10.0
    """Alerts that fire or resolve within this window go out as one message."""
    repeat_every: Duration = 4 * 3600.0
    """Remind while an alert is still firing; 0 turns reminders off."""
    keep_resolved: Duration = 3600.0
    """How long a resolved alert stays listed (TUI, check)."""
    fold_causes: list[str] = Field(default_factory=lambda: ["redis", "postgres"])
    """Source kinds whose outage is a root cause: other alerts that begin with it are folded under it."""
    fold_window: Duration = 300.0
    """Only alerts that begin within this long of the root cause (or come from its own source) fold under it:
    a crash loop an hour into a replica's outage is news of its own."""
    fold_rules: list[str] = Field(
        default_factory=lambda: [
            "source_down",
            "process_down",
            "restart_loop",
            "queue_depth",
            "queue_growing",
            "inactive",
            "lock",
            "dispatch",
            "health",
        ]
    )
    source_down: SourceDownRule = Field(default_factory=SourceDownRule)
    process_down: ProcessDownRule = Field(default_factory=ProcessDownRule)
    restart_loop: RestartLoopRule = Field(default_factory=RestartLoopRule)
    memory: MemoryRule = Field(default_factory=MemoryRule)
    queue_depth: QueueDepthRule = Field(default_factory=QueueDepthRule)
    queue_growing: QueueGrowingRule = Field(default_factory=QueueGrowingRule)
    inactive: InactiveRule = Field(default_factory=InactiveRule)
    lock: LockRule = Field(default_factory=LockRule)
    dispatch: DispatchRule = Field(default_factory=DispatchRule)
    health: HealthRule = Field(default_factory=HealthRule)
    checks: ChecksRule = Field(default_factory=ChecksRule)
    maintenance: list[MaintenanceWindow] = Field(default_factory=list)

    @model_validator(mode="after")
    def _flap_fits_window(self) -> AlertsConfig:
        if self.flap_changes > self.flap_window - 1:
            raise ValueError(
                f"flap_changes ({self.flap_changes}) must be less than flap_window ({self.flap_window}): "
                f"{self.flap_window} checks can change at most {self.flap_window - 1} times"
            )
        return self


_TOKEN_SHAPE = re.compile(r"^\d+:[A-Za-z0-9_-]+$")


class TelegramConfig(Section):
    token: Secret = ""
    """The bot token from @BotFather; empty: nothing is sent (alerts are still evaluated and shown)."""
    chat_id: int | str | None = None
    """The chat alerts go to: a number (groups are negative) or "@channelname"."""
    thread_id: int | None = None
    """A forum topic in that chat, if any."""
    api_base: str = "https://api.telegram.org"
    timeout: PositiveDuration = Field(default=15.0, gt=0)
    per_chat_interval: Duration = 1.0
    """At most one message per this interval to a chat (Telegram's guidance: about one per second)."""
    group_per_minute: int = Field(default=20, ge=1)
    """At most this many messages per minute to a group chat (Telegram's limit is 20)."""

    @property
    def configured(self) -> bool:
        return bool(self.token) and self.chat_id is not None

    @field_validator("token")
    @classmethod
    def _token_shape(cls, value: str) -> str:
        if value and not _TOKEN_SHAPE.match(value):
            # Never echo the value: it is a secret, however malformed.
            raise ValueError("this does not look like a bot token (from @BotFather: digits, a colon, then letters)")
        return value

    @field_validator("api_base")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"'{value}' is not an http(s) URL, e.g. 'https://api.telegram.org'")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _chat_with_token(self) -> TelegramConfig:
        if self.token and self.chat_id is None:
            raise ValueError("a token is set but no chat_id: say which chat the alerts go to")
        return self


class ReportConfig(Section):
    enabled: bool = True
    """Send the daily report (needs [telegram]); `opstui report` works either way."""
    time: str = "08:00"
    """Local time of day, HH:MM, in `timezone`."""
    timezone: str | None = None
    """IANA timezone; default: general.timezone."""
    keep_samples: Duration = Field(default=8 * 86400.0, ge=86400.0)
    """How long the per-minute samples behind the report are kept."""

    _timezone = field_validator("timezone")(_known_timezone)

    @field_validator("time")
    @classmethod
    def _time_of_day(cls, value: str) -> str:
        match = re.fullmatch(r"(\d{1,2}):(\d{2})", value)
        if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
            raise ValueError(f"'{value}' is not a time of day; write it like '08:00'")
        return f"{int(match.group(1)):02d}:{match.group(2)}"

    @property
    def hour_minute(self) -> tuple[int, int]:
        hour, minute = self.time.split(":")
        return int(hour), int(minute)
