"""The daemon's own HTTP endpoint: /healthz, /readyz and /metrics, on loopback unless configured otherwise.

Three read-only GETs, each answered in full and the connection closed: asyncio's streams do it in a page,
without a web framework in the dependencies of a daemon that runs on small VPSs. Requests are bounded (size,
headers, time) so a scanner or a slow client cannot hold the daemon up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

log = logging.getLogger("opstui.daemon")

READ_TIMEOUT = 5.0
MAX_HEADER_LINES = 64
MAX_LINE = 8192
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 400: "Bad Request", 503: "Service Unavailable"}


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: str
    content_type: str = "application/json"

    @classmethod
    def json(cls, status: int, document: object) -> Answer:
        return cls(status, json.dumps(document, indent=1) + "\n")


Route = Callable[[], Answer]


class MonitorServer:
    """Serves `routes` (path -> function giving the answer) on host:port; `address` is where it listens."""

    def __init__(self, routes: dict[str, Route]) -> None:
        self.routes = routes
        self._server: asyncio.Server | None = None
        self.address: str | None = None

    async def start(self, host: str, port: int) -> str:
        self._server = await asyncio.start_server(self._serve, host, port, limit=MAX_LINE)
        bound = self._server.sockets[0].getsockname()
        self.address = f"[{bound[0]}]:{bound[1]}" if ":" in bound[0] else f"{bound[0]}:{bound[1]}"
        return self.address

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            answer, head_only = await asyncio.wait_for(self._answer(reader), READ_TIMEOUT)
            body = answer.body.encode()
            head = (
                f"HTTP/1.1 {answer.status} {_REASONS.get(answer.status, '')}\r\n"
                f"Content-Type: {answer.content_type}\r\nContent-Length: {len(body)}\r\n"
                "Cache-Control: no-store\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + (b"" if head_only else body))
            await asyncio.wait_for(writer.drain(), READ_TIMEOUT)
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass  # a client that is too slow, too big or gone gets nothing more
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[Answer, bool]:
        request = (await reader.readline()).decode("latin-1").split()
        for _ in range(MAX_HEADER_LINES):
            if (await reader.readline()) in (b"\r\n", b"\n", b""):
                break
        else:
            return Answer.json(400, {"error": "too many headers"}), False
        if len(request) != 3:
            return Answer.json(400, {"error": "not an HTTP request"}), False
        method, target = request[0], request[1]
        route = self.routes.get(urlsplit(target).path)
        if route is None:
            return Answer.json(404, {"error": "not found", "endpoints": sorted(self.routes)}), False
        if method not in ("GET", "HEAD"):
            return Answer.json(405, {"error": "only GET and HEAD"}), False
        try:
            return route(), method == "HEAD"
        except Exception:
            log.exception("answering %s failed", urlsplit(target).path)
            return Answer.json(503, {"error": "internal error; see the daemon's log"}), False
