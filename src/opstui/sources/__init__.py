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
    sources += _process_sources(config)
    sources += _data_sources(config)
    return sources


def _process_sources(config: Config) -> list[Source]:
    """PM2, systemd, Docker, plain processes, error logs, backups and required env vars (config/processes.py)."""
    sources: list[Source] = []
    if config.pm2:
        from opstui.sources.pm2 import PM2Source

        sources += [
            PM2Source(
                c.name,
                home=c.home,
                interval=c.interval,
                timeout=c.timeout,
                events=c.events,
                fallback=c.fallback,
                command=c.command,
                error_log_lines=c.error_log_lines,
            )
            for c in config.pm2
        ]
    if config.systemd:
        from opstui.sources.systemd import SystemdSource

        sources += [
            SystemdSource(c.name, units=c.units, user=c.user, interval=c.interval, timeout=c.timeout)
            for c in config.systemd
        ]
    if config.docker:
        from opstui.sources.docker import DockerSource

        sources += [
            DockerSource(c.name, socket=c.socket, containers=c.containers, interval=c.interval, timeout=c.timeout)
            for c in config.docker
        ]
    if config.processes.watch:
        from opstui.sources.processes import ProcessesSource, Watched

        watch = [Watched.of(w) for w in config.processes.watch]
        sources.append(
            ProcessesSource(watch=watch, interval=config.processes.interval, timeout=config.processes.timeout)
        )
    if config.logs:
        from opstui.sources.logs import LogSource

        sources += [
            LogSource(c.name, path=c.path, lines=c.lines, match=c.match, interval=c.interval, timeout=c.timeout)
            for c in config.logs
        ]
    if config.backups or config.env:
        from opstui.model import Level
        from opstui.sources.checks import BackupSource, EnvSource

        sources += [
            BackupSource(
                c.name,
                path=c.path,
                max_age=c.max_age,
                min_size=c.min_size,
                level=Level[c.level.upper()],
                interval=c.interval,
                timeout=c.timeout,
            )
            for c in config.backups
        ]
        sources += [
            EnvSource(c.name, required=c.required, file=c.file, interval=c.interval, timeout=c.timeout)
            for c in config.env
        ]
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
