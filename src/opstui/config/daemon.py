"""Config of the headless daemon itself: its HTTP endpoint, its dead man's switch, and high availability."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator

from opstui.config._base import Duration, Secret, SecretUrl, Section, url_with_scheme

SharedDsn = Annotated[
    SecretUrl,
    url_with_scheme(("postgresql", "postgres"), "postgresql://opstui:${PGPASSWORD}@db:5432/opstui", empty=True),
]


class HighAvailability(Section):
    dsn: SharedDsn = ""
    """A PostgreSQL database every daemon of this deployment shares; empty: one daemon, no election."""
    lease: Duration = Field(default=15.0, ge=1.0)
    """How long a leader's lease lasts unless renewed (every third of it); a follower takes over this long after
    the leader died or lost the database at the latest."""
    timeout: Duration = Field(default=5.0, gt=0)
    """How long one statement to the shared database may take before it counts as failed."""

    @property
    def enabled(self) -> bool:
        return bool(self.dsn)


class DaemonConfig(Section):
    listen: str = "127.0.0.1:9464"
    """Where /healthz, /readyz and /metrics are served (host:port); "" turns the endpoint off."""
    heartbeat_url: Secret = ""
    """A dead man's switch pinged while the daemon works (Healthchecks, Uptime Kuma push, Cronitor); secret."""
    heartbeat_every: Duration = Field(default=60.0, gt=0)
    ha: HighAvailability = Field(default_factory=HighAvailability)

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        if value and split_listen(value) is None:
            raise ValueError(f"'{value}' is not host:port (e.g. 127.0.0.1:9464, [::1]:9464, 0.0.0.0:9464)")
        return value

    @field_validator("heartbeat_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("the heartbeat URL must start with http:// or https://")
        return value


def split_listen(value: str) -> tuple[str, int] | None:
    """`127.0.0.1:9464` -> ("127.0.0.1", 9464); `[::1]:9464` -> ("::1", 9464); None if it is neither."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        return None
    if host.startswith("["):
        if not host.endswith("]"):
            return None
        host = host[1:-1]
    elif ":" in host:
        return None
    return host, int(port)
