"""Alerts: rules over the snapshot, each alert's lifecycle, silences and maintenance windows, and delivery.

For the faces:
- `attach_alerting(engine, config, store)`: show alerts (TUI while a daemon runs); nothing is written.
- `start_alerting(engine, config, store, role=...)`: evaluate, persist and deliver (the daemon; the TUI when no
  daemon runs); returns an `AlertRuntime` to `stop()`.
- `silence(store, pattern, duration, by=...)`, `unsilence(store, id_or_pattern)`, `active_silences(store)`: what
  the CLI, the TUI and the bot call to mute and unmute.
- `Alerting(config, once=True)`: the processor `opstui check` uses to judge one snapshot.
"""

from opstui.alerts.runtime import AlertRuntime, attach_alerting, start_alerting, stored_delivery_checks
from opstui.alerts.service import Alerting
from opstui.alerts.silences import Silence, active_silences, silence, unsilence

__all__ = [
    "AlertRuntime",
    "Alerting",
    "Silence",
    "active_silences",
    "attach_alerting",
    "silence",
    "start_alerting",
    "stored_delivery_checks",
    "unsilence",
]
