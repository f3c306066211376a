"""systemd's notify protocol (sd_notify): READY, WATCHDOG, RELOADING, STOPPING and STATUS datagrams.

Under `Type=notify` systemd passes a unix datagram socket in $NOTIFY_SOCKET (a path, or "@name" in the
abstract namespace) and, with `WatchdogSec=`, the interval in $WATCHDOG_USEC. Each message is one datagram
of `KEY=value` lines; this is the whole protocol, so no library is needed. The variables are removed from our
environment once read, so the programs recovery actions start cannot talk to systemd in our name.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import MutableMapping

log = logging.getLogger("opstui.daemon")


class SystemdNotifier:
    """Sends notify messages to systemd; `from_environment()` is None when not run under `Type=notify`."""

    def __init__(self, address: str, *, watchdog: float | None = None) -> None:
        # "@name" is Linux's abstract namespace, spelled with a leading NUL byte on the wire.
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog = watchdog
        """Seconds between WATCHDOG=1 pings (half of WatchdogSec), or None without a watchdog."""
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self._last_ping = 0.0
        self._failed = False

    @classmethod
    def from_environment(cls, environ: MutableMapping[str, str] | None = None) -> SystemdNotifier | None:
        environ = os.environ if environ is None else environ
        address = environ.pop("NOTIFY_SOCKET", "")
        usec = environ.pop("WATCHDOG_USEC", "")
        pid = environ.pop("WATCHDOG_PID", "")
        if not address:
            return None
        watchdog = None
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            watchdog = int(usec) / 1_000_000 / 2
        return cls(address, watchdog=watchdog)

    def send(self, *fields: str) -> bool:
        """Send one message (`"READY=1"`, `"STATUS=leading"` ...); False if systemd could not be told."""
        try:
            self._sock.sendto("\n".join(fields).encode(), self.address)
        except OSError as exc:
            if not self._failed:
                log.warning("cannot notify systemd at $NOTIFY_SOCKET: %s", exc.strerror or exc)
            self._failed = True
            return False
        self._failed = False
        return True

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def reloading(self) -> None:
        # MONOTONIC_USEC lets systemd (Type=notify-reload, v253+) tell this reload from an older one.
        self.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def tick(self) -> None:
        """Called on every scheduler tick: pings the watchdog when one is due, so a wedged daemon gets restarted."""
        if self.watchdog is None:
            return
        now = time.monotonic()
        if now - self._last_ping >= self.watchdog:
            self._last_ping = now
            self.send("WATCHDOG=1")

    def close(self) -> None:
        self._sock.close()
