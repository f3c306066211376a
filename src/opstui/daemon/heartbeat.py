"""The dead man's switch: ping a URL while the daemon does its job, so someone hears when the monitor itself dies.

Every `every` seconds: GET <url> while all is well, and POST <url>/fail with the reasons (Healthchecks shows the
body) while the daemon cannot do its job: its scheduler stalls, its state database refuses, or the Telegram
chat cannot be reached. A daemon that is killed stops pinging, and the service alerts by its own channel. The
URL is a secret (it is the credential): it never appears in a log line, and errors name only its host.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from urllib.parse import urlsplit

log = logging.getLogger("opstui.daemon")

TIMEOUT = 10.0


class Heartbeat:
    """`problems()` gives the reasons the daemon cannot do its job now (empty when all is well)."""

    def __init__(self, url: str, *, every: float, problems: Callable[[], list[str]]) -> None:
        self.url = url.rstrip("/")
        self.every = every
        self.problems = problems
        self.pings = 0
        self.failures = 0
        self._host = urlsplit(url).hostname or "?"
        self._task: asyncio.Task[None] | None = None
        self._client: object = None
        self._failing: str | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="heartbeat")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._client is not None:
            await self._client.aclose()  # type: ignore[attr-defined]

    async def _run(self) -> None:
        while True:
            await self.ping()
            await asyncio.sleep(self.every)

    async def ping(self) -> bool:
        """One ping (to /fail with the reasons when something is wrong); whether the service took it."""
        from opstui._httpx import httpx

        if self._client is None:
            self._client = httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=True)
        client: httpx.AsyncClient = self._client  # type: ignore[assignment]
        problems = self.problems()
        try:
            if problems:
                response = await client.post(f"{self.url}/fail", content="\n".join(problems).encode())
            else:
                response = await client.get(self.url)
            ok = response.status_code < 400
            problem = None if ok else f"it answered HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            ok, problem = False, type(exc).__name__  # never the exception's text: it carries the URL
        if ok:
            self.pings += 1
            if self._failing is not None:
                log.info("the heartbeat at %s is taken again", self._host)
            self._failing = None
        else:
            self.failures += 1
            if problem != self._failing:
                log.warning("cannot ping the heartbeat at %s: %s", self._host, problem)
            self._failing = problem
        return ok
