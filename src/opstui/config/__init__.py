"""The configuration: one TOML file, validated strictly, with secrets from the environment and masked on output."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, PrivateAttr, model_validator

from opstui.config._base import Duration, Secret, SecretUrl, Section, iter_secrets
from opstui.config._load import discover, interpolate, read_toml, validate
from opstui.config.actions import ActionsConfig
from opstui.config.alerts import AlertsConfig, ReportConfig, TelegramConfig
from opstui.config.bot import BotConfig
from opstui.config.core import GeneralConfig, HostConfig, TuiConfig
from opstui.config.daemon import DaemonConfig
from opstui.config.data import (
    DispatchLogs,
    HealthEndpoints,
    LogActivities,
    PostgresServers,
    PrometheusEndpoints,
    RedisServers,
)
from opstui.config.processes import BackupList, DockerList, EnvList, LogList, PM2List, ProcessesConfig, SystemdList
from opstui.errors import ConfigError
from opstui.redact import redact, register_secret

__all__ = [
    "Config",
    "ConfigError",
    "Duration",
    "Secret",
    "SecretUrl",
    "Section",
    "discover",
    "load_config",
    "render_config",
]


class Config(Section):
    general: GeneralConfig = Field(default_factory=GeneralConfig)
    host: HostConfig = Field(default_factory=HostConfig)
    tui: TuiConfig = Field(default_factory=TuiConfig)
    # Processes and what surrounds them (config/processes.py).
    pm2: PM2List = Field(default_factory=list)
    systemd: SystemdList = Field(default_factory=list)
    docker: DockerList = Field(default_factory=list)
    processes: ProcessesConfig = Field(default_factory=ProcessesConfig)
    logs: LogList = Field(default_factory=list)
    backups: BackupList = Field(default_factory=list)
    env: EnvList = Field(default_factory=list)
    # Recovery actions (opstui.actions).
    actions: ActionsConfig = Field(default_factory=ActionsConfig)
    # alerting: rules, Telegram delivery, daily report
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    telegram: TelegramConfig = Field(default_factory=TelegramConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    # The Telegram command bot (opstui.bot); its token is [telegram] token.
    bot: BotConfig = Field(default_factory=BotConfig)
    # Data sources: one list entry per Redis server, database, log file or endpoint (config/data.py).
    redis: RedisServers = Field(default_factory=list)
    postgres: PostgresServers = Field(default_factory=list)
    dispatch: DispatchLogs = Field(default_factory=list)
    activity: LogActivities = Field(default_factory=list)
    health: HealthEndpoints = Field(default_factory=list)
    prometheus: PrometheusEndpoints = Field(default_factory=list)
    # The daemon itself: HTTP endpoint, heartbeat, high availability (opstui.daemon).
    daemon: DaemonConfig = Field(default_factory=DaemonConfig)

    _path: Path | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _bot_has_a_token(self) -> Config:
        if self.bot.enabled and not self.telegram.token:
            raise ValueError("bot.enabled = true needs [telegram] token (and chat_id): the bot answers with that token")
        return self

    @property
    def path(self) -> Path | None:
        """The file this config was read from; None when opstui runs on defaults."""
        return self._path

    def state_dir(self) -> Path:
        if self.general.state_dir is not None:
            return self.general.state_dir
        from platformdirs import user_state_path

        return user_state_path("opstui", appauthor=False)


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    discover_default: bool = True,
) -> Config:
    """Load and validate a config; raises ConfigError naming the file, key and problem.

    `path=None` looks in the usual places (see `discover`) unless `discover_default` is False; no file found
    means defaults: watch the local host.
    """
    environ = os.environ if environ is None else environ
    found = discover(path, environ=environ) if (path is not None or discover_default) else None
    if found is None:
        config = Config()
    else:
        text, raw = read_toml(found)
        data = interpolate(raw, environ=environ, file=str(found), text=text)
        config = validate(Config, data, file=str(found), text=text)
        config._path = found
    for secret, whole in iter_secrets(config):
        register_secret(secret, whole=whole)
    return config


def render_config(config: Config) -> str:
    """The effective config as TOML, defaults filled in and every secret masked (`opstui config show`)."""
    import tomli_w

    data = _drop_none(config.model_dump(mode="json"))
    header = f"# effective config from {config.path}\n" if config.path else "# no config file: defaults\n"
    return header + redact(tomli_w.dumps(data))


def _drop_none(value: Any) -> Any:
    # TOML has no null: an unset optional key is simply absent.
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value
