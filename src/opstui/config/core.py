"""Config sections every install has: who this instance is, where state lives, the local host, the screen."""

from __future__ import annotations

import socket
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from opstui.config._base import Duration, PositiveDuration, Section


class GeneralConfig(Section):
    instance: str = Field(default_factory=socket.gethostname, min_length=1)
    """Name of this deployment in headers, alerts and reports."""
    timezone: str = "UTC"
    """IANA timezone for reports, maintenance windows and times shown to people."""
    state_dir: Path | None = None
    """Where the state database lives; default: the platform's user state dir (~/.local/state/opstui)."""
    read_only: bool = False
    """Turn every mutating action off, in the TUI, the CLI and the bot."""

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone '{value}'; use an IANA name such as 'Europe/Berlin'") from None
        return value

    @field_validator("state_dir")
    @classmethod
    def _expand_state_dir(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None


class HostConfig(Section):
    enabled: bool = True
    """Watch this machine: memory, swap and the biggest processes."""
    interval: PositiveDuration = 5.0
    timeout: PositiveDuration = 3.0
    top_processes: int = Field(default=8, ge=0, le=100)
    """How many of the biggest processes by memory to list."""


class TuiConfig(Section):
    theme: str | None = None
    """A theme from the shipped themes/ or your config dir's themes/ folder; `--theme NAME` overrides it.

    Unset: opstui-dark, or opstui-ansi when the terminal has only 16 colours.
    """
    refresh: Duration = Field(default=2.0, ge=0.2, le=3600)
    """How often the screen redraws from the latest snapshot (the sources keep their own intervals)."""
    keys: dict[str, str] = Field(default_factory=dict)
    """Remap keys by command id, e.g. `{ pause = "space" }`; the help screen (?) lists the ids.

    A value may name several keys, comma separated ("f5,ctrl+r"). The TUI checks ids and keys at start.
    """

    @field_validator("keys")
    @classmethod
    def _keys_named(cls, value: dict[str, str]) -> dict[str, str]:
        for command, keys in value.items():
            if not [k for k in keys.split(",") if k.strip()]:
                raise ValueError(f"no key given for '{command}'")
        return value
