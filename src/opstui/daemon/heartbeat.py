"""The dead man's switch: ping a URL while the daemon does its job, so someone hears when the monitor itself dies.

Every `every` seconds: GET <url> while all is well, and a failure ping while the daemon cannot do its job (its
scheduler stalls, its state database refuses, or the Telegram chat cannot be reached): POST <url>/fail with the
reasons for Healthchecks and Cronitor (Healthchecks shows the body), or, for a URL with a query string such as
an Uptime Kuma push URL (`.../api/push/<token>?status=up&msg=OK&ping=`), GET the same URL with `status=down` and
`msg=<the first reason>`, since Kuma has no /fail and would read `...&ping=/fail` as up. A daemon that is killed
stops pinging, and the service alerts by its own channel. The URL is a secret (it is the credential): it never
appears in a log line, and errors name only its host.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

log = logging.getLogger("opstui.daemon")

TIMEOUT = 10.0
MSG_LIMIT = 200
"""Characters of the first reason put into a push URL's `msg` (the whole list goes into a /fail body)."""


def failure_url(url: str, reason: str) -> str | None:
    """The push URL saying down (`status=down`, `msg=reason`), or None when the URL takes `/fail` instead."""
    parts = urlsplit(url)
    if not parts.query:
        return None
    wanted = {"status": "down", "msg": reason[:MSG_LIMIT]}
    query = [(k, wanted.pop(k, v)) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit(parts._replace(query=urlencode([*query, *wanted.items()])))


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
        """One ping (a failure ping with the reasons when something is wrong); whether the service took it."""
        from opstui._httpx import httpx

        if self._client is None:
            self._client = httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=True)
        client: httpx.AsyncClient = self._client  # type: ignore[assignment]
        problems = self.problems()
        try:
            push = failure_url(self.url, problems[0]) if problems else None
            if push is not None:
                response = await client.get(push)
            elif problems:
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
