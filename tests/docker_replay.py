"""A replaying Docker Engine: a real HTTP server on a unix socket answering from recorded Engine API answers.

Used by tests/test_docker.py, tests/test_builtin_processes.py and bench/processes.py (no Docker
engine runs on these machines). A POST (restart, stop, start) is recorded and answered 204 like the engine,
unless a test set another answer; `on_post` lets a test change what the engine says afterwards.
"""

from __future__ import annotations

import json
import socketserver
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

RECORDINGS = Path(__file__).parent / "recordings" / "docker"
NAMES = ("api", "cache", "worker", "batch")


def recorded(name: str) -> Any:
    return json.loads((RECORDINGS / name).read_text())


class FakeEngine:
    """An HTTP server on a unix socket answering the Engine API paths opstui asks, from recordings."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.answers: dict[str, tuple[int, bytes]] = {}
        self.requests: list[str] = []
        self.posts: list[str] = []
        self.post_answers: dict[str, tuple[int, bytes]] = {}
        self.on_post: dict[str, Callable[[], None]] = {}
        self.answer("/containers/json", recorded("containers.json"))
        for name in NAMES:
            # The engine takes a container's name wherever its id goes.
            self.answer(f"/containers/{self.id(name)}/json", recorded(f"inspect-{name}.json"))
            self.answer(f"/containers/{name}/json", recorded(f"inspect-{name}.json"))
        self.answer(f"/containers/{self.id('api')}/stats", recorded("stats-api-1.json"))
        self.answer(f"/containers/{self.id('cache')}/stats", recorded("stats-cache.json"))
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                fake.requests.append(self.path)
                self.reply(*fake.answers.get(urlsplit(self.path).path, (404, b'{"message":"No such container"}')))

            def do_POST(self) -> None:
                path = urlsplit(self.path).path
                fake.posts.append(self.path)
                answer = fake.post_answers.get(path, (204, b""))
                if answer[0] < 300 and path in fake.on_post:
                    fake.on_post[path]()
                self.reply(*answer)

            def reply(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def address_string(self) -> str:
                return "unix"

            def log_message(self, format: str, *args: Any) -> None:
                return

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

        self.server = Server(str(path), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def id(self, name: str) -> str:
        return next(c["Id"] for c in recorded("containers.json") if c["Names"] == [f"/{name}"])

    def answer(self, path: str, value: Any, status: int = 200) -> None:
        self.answers[path] = (status, value if isinstance(value, bytes) else json.dumps(value).encode())

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
