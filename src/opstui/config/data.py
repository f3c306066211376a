"""Config of the data sources: Redis servers, PostgreSQL databases, dispatch logs, log activity, health, Prometheus.

Each list entry becomes one source (one connection, one schedule): `[[redis]]`, `[[postgres]]`, `[[dispatch]]`,
`[[activity]]`, `[[health]]`, `[[prometheus]]`. What a server holds (queues, locks, activity, dispatch counts)
is nested under it, so one Redis round trip or one PostgreSQL connection serves all of it.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Protocol, TypeVar

from pydantic import AfterValidator, BeforeValidator, Field, field_validator, model_validator

from opstui.config._base import Duration, PositiveDuration, SecretUrl, Section, url_with_scheme
from opstui.units import parse_size

Match = dict[str, str | int | float | bool]
"""A match rule on the fields of a JSON log line: every field must be present with exactly this value."""

Size = Annotated[int, BeforeValidator(parse_size)]
"""Bytes; written in config as `64MB`, `1GB` or a plain number of bytes."""

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")


class _Named(Protocol):
    @property
    def name(self) -> str: ...


_T = TypeVar("_T", bound=_Named)


def _unique_names(items: list[_T]) -> list[_T]:
    seen: set[str] = set()
    for item in items:
        if item.name in seen:
            raise ValueError(f"the name '{item.name}' is used twice; names must be unique here")
        seen.add(item.name)
    return items


def _identifier(value: str, *, dotted: bool = False) -> str:
    """A PostgreSQL table or column name; checked so that nothing but a name can reach the SQL."""
    parts = value.split(".") if dotted else [value]
    if len(parts) > 2 or not all(_IDENTIFIER.fullmatch(part) for part in parts):
        what = "a table name such as 'batch_locks' or 'public.batch_locks'" if dotted else "a column name"
        raise ValueError(f"'{value}' is not {what} (letters, digits and _ only)")
    return value


def _table_name(value: str) -> str:
    return _identifier(value, dotted=True)


TableName = Annotated[str, AfterValidator(_table_name)]
ColumnName = Annotated[str, AfterValidator(_identifier)]
OptionalColumn = Annotated[ColumnName | None, BeforeValidator(lambda value: value or None)]
"""A column the table may not have: "" (TOML has no null) means none."""
RedisUrl = Annotated[SecretUrl, url_with_scheme(("redis", "rediss", "unix"), "redis://:PASSWORD@127.0.0.1:6379/0")]
PostgresDsn = Annotated[
    SecretUrl, url_with_scheme(("postgresql", "postgres"), "postgresql://USER:PASSWORD@127.0.0.1:5432/DB")
]
HttpUrl = Annotated[SecretUrl, url_with_scheme(("http", "https"), "http://127.0.0.1:8080/health")]


Threshold = Annotated[int | None, Field(ge=0)]
"""A queue depth at which the queue counts as a warning (`warn`) or critical (`crit`)."""


# -------------------------------------------------------------------------------------------------------- Redis

QueueKind = Literal["list", "zset", "stream", "bullmq", "bull", "rq", "celery", "sidekiq"]
PLAIN_KINDS = ("list", "zset", "stream")
DEFAULT_PREFIX = {"bullmq": "bull", "bull": "bull", "rq": "rq", "celery": "", "sidekiq": ""}
CELERY_SEP = "\x06\x16"


class RedisQueueConfig(Section):
    name: str = Field(min_length=1)
    """Shown name; also the library's queue name (or the key of a plain list/zset/stream) unless set below."""
    kind: QueueKind = "list"
    key: str | None = None
    """list, zset, stream: the Redis key (default: name)."""
    queue: str | None = None
    """bullmq, bull, rq, celery, sidekiq: the library's queue name (default: name)."""
    prefix: str | None = None
    """bullmq/bull: the key prefix (default "bull"); rq: "rq"; celery: global_keyprefix (""); sidekiq: namespace."""
    group: str | None = None
    """stream: the consumer group whose backlog is the depth (default: the group furthest behind)."""
    due: bool = False
    """zset: the scores are unix times; also count the members already due."""
    sep: str = CELERY_SEP
    """celery: kombu's `sep` transport option."""
    priority_steps: list[int] = Field(default_factory=lambda: [0, 3, 6, 9])
    """celery: kombu's `priority_steps` transport option."""
    visibility_timeout: Duration = 3600.0
    """celery: unacked messages older than this are redelivered (counted as `unacked_overdue`)."""
    warn: Threshold = None
    crit: Threshold = None

    @model_validator(mode="after")
    def _options_fit_the_kind(self) -> RedisQueueConfig:
        only = {
            "key": PLAIN_KINDS,
            "queue": tuple(DEFAULT_PREFIX),
            "prefix": tuple(DEFAULT_PREFIX),
            "group": ("stream",),
            "due": ("zset",),
            "sep": ("celery",),
            "priority_steps": ("celery",),
            "visibility_timeout": ("celery",),
        }
        for option, kinds in only.items():
            if option in self.model_fields_set and self.kind not in kinds:
                raise ValueError(f"'{option}' does not apply to kind = \"{self.kind}\" (only to {', '.join(kinds)})")
        if self.kind == "celery" and (not self.priority_steps or self.priority_steps[0] != 0):
            raise ValueError("priority_steps must start with 0, as kombu's do (default [0, 3, 6, 9])")
        return self

    @property
    def redis_key(self) -> str:
        return self.key or self.name

    @property
    def queue_name(self) -> str:
        return self.queue or self.name

    @property
    def key_prefix(self) -> str:
        return DEFAULT_PREFIX.get(self.kind, "") if self.prefix is None else self.prefix


class RedisLockConfig(Section):
    name: str = Field(min_length=1)
    key: str = Field(min_length=1)
    """The lock key: its value is the holder, its expiry (PTTL) the lock's."""
    expected_holder: str | None = None
    """Who should hold it; a glob such as "batch@*". Another holder shows the lock as `unexpected`."""


class RedisActivityConfig(Section):
    name: str = Field(min_length=1)
    key: str | None = None
    """One key whose value (or TTL) says when the job was last done."""
    pattern: str | None = None
    """Or the newest of all keys matching a pattern, e.g. "last-msg:*" (found with a bounded SCAN, see below)."""
    by: Literal["value", "ttl"] = "value"
    """value: the key holds a unix time (s or ms) or an ISO 8601 time; ttl: the key is (re)set with a fixed TTL."""
    ttl: Duration | None = None
    """by = "ttl": the TTL the application sets, so that last activity = now - (ttl - remaining TTL)."""
    max_age: Duration | None = None
    """Older activity than this is a warning."""
    scan_per_tick: int = Field(default=1000, ge=10, le=100_000)
    """pattern: keys SCAN examines per tick (COUNT); a full pass over the keyspace spreads over several ticks."""
    max_keys: int = Field(default=1000, ge=1, le=100_000)
    """pattern: how many of the newest matching keys are re-read each tick."""

    @model_validator(mode="after")
    def _key_or_pattern(self) -> RedisActivityConfig:
        if (self.key is None) == (self.pattern is None):
            raise ValueError("set exactly one of 'key' or 'pattern'")
        if self.by == "ttl" and self.ttl is None:
            raise ValueError("by = \"ttl\" needs 'ttl', the TTL your application sets on the key")
        return self


class RedisDispatchConfig(Section):
    name: str = Field(min_length=1)
    processed: str
    """The key of the counter of items processed by the latest run."""
    sent: str
    """The key of the counter of items delivered."""
    failed: str | None = None
    """The key of the counter of failed deliveries."""
    started: str | None = None
    """A key holding when the latest run started (unix time or ISO 8601)."""


class RedisConfig(Section):
    name: str = Field(default="main", min_length=1)
    """Shown as `redis <name>`; unique among [[redis]] entries."""
    url: RedisUrl = "redis://127.0.0.1:6379/0"
    """redis://[:PASSWORD@]HOST:PORT/DB, rediss:// for TLS, or unix:///path/to/redis.sock?db=0."""
    interval: PositiveDuration = 5.0
    timeout: PositiveDuration = 3.0
    memory: bool = True
    """Read used_memory and maxmemory (INFO memory, in the same round trip)."""
    queues: Annotated[list[RedisQueueConfig], AfterValidator(_unique_names)] = Field(default_factory=list)
    locks: Annotated[list[RedisLockConfig], AfterValidator(_unique_names)] = Field(default_factory=list)
    activity: Annotated[list[RedisActivityConfig], AfterValidator(_unique_names)] = Field(default_factory=list)
    dispatch: Annotated[list[RedisDispatchConfig], AfterValidator(_unique_names)] = Field(default_factory=list)


# --------------------------------------------------------------------------------------------------- PostgreSQL


class PostgresQueueConfig(Section):
    name: str = Field(min_length=1)
    table: TableName | None = None
    """Count the rows of this table (e.g. a retry table such as failed_amocrm_sync)..."""
    where: str | None = None
    """...that match this SQL condition, e.g. "status = 'pending'"."""
    query: str | None = None
    """Or your own read-only query: its first column is the depth, further named columns become parts."""
    warn: Threshold = None
    crit: Threshold = None

    @model_validator(mode="after")
    def _table_or_query(self) -> PostgresQueueConfig:
        if (self.table is None) == (self.query is None):
            raise ValueError("set exactly one of 'table' or 'query'")
        if self.where is not None and self.table is None:
            raise ValueError("'where' goes with 'table'; put the condition into 'query' instead")
        return self


class PostgresLockConfig(Section):
    name: str = Field(min_length=1)
    kind: Literal["table", "advisory"] = "table"
    key: str | int | list[int]
    """table: the lock_key value (e.g. "daily_batch"); advisory: the bigint key or the [int, int] pair."""
    expected_holder: str | None = None
    """Who should hold it; a glob such as "batch@*" (advisory: matched against application_name)."""
    table: TableName = "batch_locks"
    key_column: ColumnName = "lock_key"
    holder_column: ColumnName = "instance_id"
    expires_column: ColumnName = "expires_at"
    created_column: OptionalColumn = "created_at"
    updated_column: OptionalColumn = "updated_at"

    @model_validator(mode="after")
    def _key_fits_the_kind(self) -> PostgresLockConfig:
        if self.kind == "table" and not isinstance(self.key, str):
            raise ValueError('a table lock\'s key is the lock_key value, a string such as "daily_batch"')
        if self.kind == "advisory":
            if isinstance(self.key, str):
                raise ValueError("an advisory lock's key is a bigint, or a pair of ints such as [1, 42]")
            if isinstance(self.key, list) and len(self.key) != 2:
                raise ValueError("an advisory lock's two-part key is a pair of ints such as [1, 42]")
            table_options = {"table", "key_column", "holder_column", "expires_column", "created_column"}
            if set(self.model_fields_set) & (table_options | {"updated_column"}):
                raise ValueError('table and column names apply to kind = "table" only')
        return self


class PostgresActivityConfig(Section):
    name: str = Field(min_length=1)
    table: TableName | None = None
    """The newest value of `column` in this table is the last activity (index the column on big tables)..."""
    column: ColumnName | None = None
    where: str | None = None
    query: str | None = None
    """Or your own read-only query returning one timestamp (or unix time)."""
    max_age: Duration | None = None
    """Older activity than this is a warning."""

    @model_validator(mode="after")
    def _table_or_query(self) -> PostgresActivityConfig:
        if self.query is None and (self.table is None or self.column is None):
            raise ValueError("set 'table' and 'column', or 'query'")
        if self.query is not None and (self.table or self.column or self.where):
            raise ValueError("set 'table' and 'column', or 'query', not both")
        return self


class PostgresDispatchConfig(Section):
    name: str = Field(min_length=1)
    query: str
    """A read-only query returning one row with columns processed, sent, failed (and optionally run_started_at)."""


class PostgresConfig(Section):
    name: str = Field(default="main", min_length=1)
    """Shown as `postgres <name>`; unique among [[postgres]] entries."""
    dsn: PostgresDsn = "postgresql://postgres@127.0.0.1:5432/postgres"
    """postgresql://USER:PASSWORD@HOST:PORT/DATABASE (?sslmode=require for TLS)."""
    interval: PositiveDuration = 10.0
    timeout: PositiveDuration = 5.0
    queues: Annotated[list[PostgresQueueConfig], AfterValidator(_unique_names)] = Field(default_factory=list)
    locks: Annotated[list[PostgresLockConfig], AfterValidator(_unique_names)] = Field(default_factory=list)
    activity: Annotated[list[PostgresActivityConfig], AfterValidator(_unique_names)] = Field(default_factory=list)
    dispatch: Annotated[list[PostgresDispatchConfig], AfterValidator(_unique_names)] = Field(default_factory=list)


# ------------------------------------------------------------------------------------------- files and endpoints


def _default_processed() -> Match:
    return {"where": "processUser", "status": "completed"}


def _default_sent() -> Match:
    return {"where": "sendToMonitoringBot", "phase": "after_send", "success": True}


def _default_failed() -> Match:
    return {"where": "sendToMonitoringBot", "phase": "send_failed"}


def _default_start() -> Match:
    return {"where": "dailyReport", "phase": "start"}


class DispatchLogConfig(Section):
    name: str = Field(min_length=1)
    path: str = Field(min_length=1)
    """The JSON-lines log the report run writes."""
    interval: PositiveDuration = 5.0
    timeout: PositiveDuration = 5.0
    processed: Match = Field(default_factory=_default_processed)
    sent: Match = Field(default_factory=_default_sent)
    failed: Match = Field(default_factory=_default_failed)
    start: Match = Field(default_factory=_default_start)
    """The line that starts a run; the latest run is everything after the last such line. {} for none."""
    window: Duration | None = None
    """Instead of a start line: count the lines of the last `window` (by their timestamp field)."""
    timestamp_field: str = "ts"
    """The field holding each line's time (ISO 8601 or unix time)."""
    lookback: Size = 64 * 1024 * 1024
    """How far back from the end to look for the latest run when opstui starts."""

    @field_validator("processed", "sent")
    @classmethod
    def _not_empty(cls, value: Match) -> Match:
        if not value:
            raise ValueError('a match rule needs at least one field, e.g. { where = "processUser" }')
        return value


class LogActivityConfig(Section):
    name: str = Field(min_length=1)
    path: str = Field(min_length=1)
    """A log file the application writes to whenever it does its job."""
    timestamp: str = "mtime"
    """"mtime": the file's modification time; or the JSON field of the last line that holds its time."""
    max_age: Duration | None = None
    """Older activity than this is a warning."""
    interval: PositiveDuration = 5.0
    timeout: PositiveDuration = 3.0


class HealthConfig(Section):
    name: str = Field(min_length=1)
    url: HttpUrl
    interval: PositiveDuration = 15.0
    timeout: PositiveDuration = 5.0
    """How long the endpoint may take to answer before it counts as failing."""
    expect_status: list[int] = Field(default_factory=list)
    """The status codes that mean healthy (default: any 2xx)."""
    verify_tls: bool = True


_SELECTOR = re.compile(r'[a-zA-Z_:][a-zA-Z0-9_:]*(\{\s*([a-zA-Z_][a-zA-Z0-9_]*\s*=\s*"(?:[^"\\]|\\.)*"\s*,?\s*)*\})?')


def _selector(value: str) -> str:
    if not _SELECTOR.fullmatch(value.strip()):
        raise ValueError(
            f"'{value}' is not a metric selector; write a name with exact label matches, e.g. "
            "'http_requests_total{code=\"500\"}'"
        )
    return value


Selector = Annotated[str, AfterValidator(_selector)]


class PrometheusMetricConfig(Section):
    select: Selector = Field(min_length=1)
    """A metric name with optional exact label matches, e.g. 'http_requests_total{code="500"}'; matching series
    are summed."""
    name: str | None = None
    """Shown name (default: the selector)."""
    warn: float | None = None
    """A value at or above this is a warning..."""
    crit: float | None = None
    """...and at or above this, critical."""
    warn_below: float | None = None
    """A value at or below this is a warning (e.g. `up`)..."""
    crit_below: float | None = None


def _metric_table(value: Any) -> Any:
    return {"select": value} if isinstance(value, str) else value


class PrometheusConfig(Section):
    name: str = Field(min_length=1)
    url: HttpUrl
    """The text-format metrics endpoint, e.g. http://127.0.0.1:9100/metrics."""
    interval: PositiveDuration = 15.0
    timeout: PositiveDuration = 5.0
    metrics: list[Annotated[PrometheusMetricConfig, BeforeValidator(_metric_table)]] = Field(min_length=1)
    """Selectors, or tables with thresholds: { select = "queue_size", warn = 100 }."""


RedisServers = Annotated[list[RedisConfig], AfterValidator(_unique_names)]
PostgresServers = Annotated[list[PostgresConfig], AfterValidator(_unique_names)]
DispatchLogs = Annotated[list[DispatchLogConfig], AfterValidator(_unique_names)]
LogActivities = Annotated[list[LogActivityConfig], AfterValidator(_unique_names)]
HealthEndpoints = Annotated[list[HealthConfig], AfterValidator(_unique_names)]
PrometheusEndpoints = Annotated[list[PrometheusConfig], AfterValidator(_unique_names)]
