"""Sources read facts from real systems; `build_sources` makes the ones a config asks for."""

from __future__ import annotations

from opstui.config import Config
from opstui.sources.base import Source

__all__ = ["Source", "build_sources"]


def build_sources(config: Config) -> list[Source]:
    """Every source the config describes, in the order panes and reports list them.

    Each source module is imported only when the config uses it, so an install that watches no Redis never
    pays for importing redis-py.
    """
    sources: list[Source] = []
    if config.host.enabled:
        from opstui.sources.host import HostSource

        sources.append(
            HostSource(
                interval=config.host.interval, timeout=config.host.timeout, top_processes=config.host.top_processes
            )
        )
    sources += _data_sources(config)
    return sources


def _data_sources(config: Config) -> list[Source]:
    """Redis servers, PostgreSQL databases, dispatch logs, log activity, health and Prometheus endpoints."""
    sources: list[Source] = []
    if config.redis:
        from opstui.sources.redis import RedisSource

        sources += [RedisSource(redis) for redis in config.redis]
    if config.postgres:
        from opstui.sources.postgres import PostgresSource

        sources += [PostgresSource(postgres) for postgres in config.postgres]
    if config.dispatch:
        from opstui.sources.dispatch import DispatchLogSource

        sources += [DispatchLogSource(log) for log in config.dispatch]
    if config.activity:
        from opstui.sources.activity import LogActivitySource

        sources += [LogActivitySource(activity) for activity in config.activity]
    if config.health or config.prometheus:
        from opstui.sources.http import HealthSource, PrometheusSource

        sources += [HealthSource(health) for health in config.health]
        sources += [PrometheusSource(prometheus) for prometheus in config.prometheus]
    return sources
