"""Config sections for processes and what surrounds them: PM2, systemd, Docker, plain processes, logs, backups, env."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import AfterValidator, Field, field_validator, model_validator

from opstui.config._base import Duration, PositiveDuration, Section


def _pm2_home() -> Path:
    # As PM2's own paths.js decides.
    return Path(os.environ.get("PM2_HOME") or Path.home() / ".pm2").expanduser()


def _docker_socket() -> Path:
    # DOCKER_HOST=unix:///run/user/1000/docker.sock is how rootless Docker is found; tcp:// hosts are not supported.
    host = os.environ.get("DOCKER_HOST", "")
    return Path(host.removeprefix("unix://")) if host.startswith("unix://") else Path("/var/run/docker.sock")


def _regex(value: str | None) -> str | None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
    return value


Regex = Annotated[str, AfterValidator(_regex)]


def _expand(value: Path) -> Path:
    return value.expanduser()


UserPath = Annotated[Path, AfterValidator(_expand)]
"""A path in which `~` means the home directory."""


S = TypeVar("S", bound=Section)


def unique_names(table: str) -> Callable[[list[S]], list[S]]:
    """A validator: each entry of an array of tables has its own name (sources, rows and alerts go by it)."""

    def check(entries: list[S]) -> list[S]:
        names: Sequence[str] = [getattr(e, "name", "") for e in entries]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"two [[{table}]] entries are named '{twice[0]}'; give each its own name")
        return entries

    return check


class PM2Config(Section):
    """`[[pm2]]`: one PM2 daemon, found by its home directory."""

    name: str = Field(default="pm2", min_length=1)
    """The source's name on screens and in alerts; give each [[pm2]] its own when there are several."""
    home: UserPath = Field(default_factory=_pm2_home)
    """PM2_HOME of the user PM2 runs as (its rpc.sock, pub.sock and logs live there)."""
    interval: PositiveDuration = 5.0
    timeout: PositiveDuration = 4.0
    events: bool = True
    """Follow pub.sock so a crash or restart shows within a second instead of at the next poll."""
    fallback: bool = True
    """Use `pm2 jlist` when the daemon runs but its socket cannot be used (never when no daemon runs)."""
    command: str = "pm2"
    """The pm2 executable for the fallback."""
    error_log_lines: int = Field(default=20, ge=0, le=1000)
    """Last lines of each process's PM2 error log to show (0: do not read the error logs)."""


class SystemdConfig(Section):
    """`[[systemd]]`: units of one systemd manager."""

    name: str = Field(default="systemd", min_length=1)
    units: list[str] = Field(min_length=1)
    """Unit names, e.g. "bot.service" (".service" may be left out)."""
    user: bool = False
    """Units of the user's own manager (`systemctl --user`) instead of the system's."""
    interval: PositiveDuration = 5.0
    timeout: PositiveDuration = 3.0


class DockerConfig(Section):
    """`[[docker]]`: containers of one Docker engine."""

    name: str = Field(default="docker", min_length=1)
    socket: UserPath = Field(default_factory=_docker_socket)
    """The engine's unix socket; default: from DOCKER_HOST (unix://...), else /var/run/docker.sock."""
    containers: list[str] = Field(default_factory=list)
    """Container names to watch; empty: every container, running or not."""
    interval: PositiveDuration = 5.0
    timeout: PositiveDuration = 3.0


class WatchedProcessConfig(Section):
    """`[[processes.watch]]`: one process, found by exactly one of process_name, cmdline or pidfile."""

    name: str = Field(min_length=1)
    process_name: str | None = None
    """The executable's name, as `ps -e` shows it (e.g. "nginx", "redis-server")."""
    cmdline: Regex | None = None
    """A regular expression searched in the whole command line, e.g. 'node .*bot\\.js'."""
    pidfile: UserPath | None = None
    """A file holding the PID, e.g. "/run/bot.pid"."""
    log_files: list[UserPath] = Field(default_factory=list)
    """The process's log files, listed with it (add a [[logs]] entry to show the error lines)."""

    @model_validator(mode="after")
    def _one_way_to_find_it(self) -> WatchedProcessConfig:
        given = [k for k in ("process_name", "cmdline", "pidfile") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of process_name, cmdline or pidfile (got {', '.join(given) or 'none'})")
        return self


class ProcessesConfig(Section):
    """`[processes]`: plain processes of this host, read with one sweep of the process table."""

    interval: PositiveDuration = 5.0
    timeout: PositiveDuration = 3.0
    watch: Annotated[list[WatchedProcessConfig], AfterValidator(unique_names("processes.watch"))] = Field(
        default_factory=list
    )


class LogConfig(Section):
    """`[[logs]]`: one log file whose last error lines are shown."""

    name: str = Field(min_length=1)
    path: UserPath
    lines: int = Field(default=20, ge=1, le=1000)
    match: Regex | None = None
    """Only lines matching this regular expression count as error lines; default: every line."""
    interval: PositiveDuration = 2.0
    timeout: PositiveDuration = 2.0


class BackupConfig(Section):
    """`[[backups]]`: the newest file matching a glob must be recent enough."""

    name: str = Field(min_length=1)
    path: str = Field(min_length=1)
    """A glob, e.g. "/var/backups/db/*.sql.gz" ("**" matches any depth)."""
    max_age: Duration
    min_size: int = Field(default=1, ge=0)
    """Bytes; a smaller newest file (an empty dump) counts as no backup."""
    level: Literal["warning", "critical"] = "critical"
    interval: PositiveDuration = 60.0
    timeout: PositiveDuration = 5.0

    @field_validator("path")
    @classmethod
    def _expand_home(cls, value: str) -> str:
        return os.path.expanduser(value)


class EnvConfig(Section):
    """`[[env]]`: environment variables an app needs must be set; only names are checked, no value is kept."""

    name: str = Field(min_length=1)
    required: list[str] = Field(min_length=1)
    file: UserPath | None = None
    """A dotenv file to check (e.g. the app's .env); default: opstui's own environment."""
    interval: PositiveDuration = 60.0
    timeout: PositiveDuration = 5.0

    @field_validator("required")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        bad = [name for name in value if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name)]
        if bad:
            raise ValueError(f"not environment variable names: {', '.join(bad)}")
        return value


PM2List = Annotated[list[PM2Config], AfterValidator(unique_names("pm2"))]
SystemdList = Annotated[list[SystemdConfig], AfterValidator(unique_names("systemd"))]
DockerList = Annotated[list[DockerConfig], AfterValidator(unique_names("docker"))]
LogList = Annotated[list[LogConfig], AfterValidator(unique_names("logs"))]
BackupList = Annotated[list[BackupConfig], AfterValidator(unique_names("backups"))]
EnvList = Annotated[list[EnvConfig], AfterValidator(unique_names("env"))]
