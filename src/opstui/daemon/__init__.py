"""The headless daemon (`opstui daemon`): the engine, alerting, the Telegram bot's home, and its own health.

- `runner.py`: `Daemon` (start, SIGHUP reload, a bounded SIGTERM stop) and `serve`, the process entry point.
- `leader.py`: who leads when several daemons share a PostgreSQL database (a lease with a fencing token).
- `presence.py`: what the daemon writes about itself for the TUI's header.
- `http.py` and `metrics.py`: /healthz, /readyz and /metrics (Prometheus text).
- `heartbeat.py`: the dead man's switch; `systemd.py`: READY, WATCHDOG and STOPPING for `Type=notify`.
"""

from opstui.daemon.leader import LeaderInfo, Leadership
from opstui.daemon.presence import HEARTBEAT_EVERY, HEARTBEAT_KEY, DaemonPresence, read_presence, write_presence
from opstui.daemon.runner import STOP_BUDGET, Daemon, run_daemon, serve

__all__ = [
    "HEARTBEAT_EVERY",
    "HEARTBEAT_KEY",
    "STOP_BUDGET",
    "Daemon",
    "DaemonPresence",
    "LeaderInfo",
    "Leadership",
    "read_presence",
    "run_daemon",
    "serve",
    "write_presence",
]
