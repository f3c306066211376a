"""Health checks and Prometheus metrics against a real local HTTP server answering the way real services do."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from opstui.alerts import Alerting
from opstui.check import assess
from opstui.config import Config
from opstui.config.data import HealthConfig, PrometheusConfig
from opstui.demo.servers import free_port
from opstui.errors import SourceUnavailable
from opstui.model import Facts, HealthInfo, Level, Snapshot
from opstui.sources.http import HealthSource, PrometheusSource


@dataclass
class Server:
    url: str
    routes: dict[str, tuple[int, str, bytes, float]] = field(default_factory=dict)

    def answer(self, path: str, status: int, body: Any, content_type: str = "application/json", delay: float = 0):
        data = body if isinstance(body, bytes) else (body if isinstance(body, str) else json.dumps(body)).encode()
        self.routes[path] = (status, content_type, data, delay)


@pytest.fixture
def server() -> Iterator[Server]:
    routes: dict[str, tuple[int, str, bytes, float]] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, content_type, body, delay = routes.get(self.path, (404, "text/plain", b"not found", 0))
            time.sleep(delay)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=http.serve_forever, args=(0.05,), daemon=True).start()
    yield Server(f"http://127.0.0.1:{http.server_address[1]}", routes)
    http.shutdown()
    http.server_close()


def check(url: str, **options: Any) -> HealthInfo:
    source = HealthSource(HealthConfig(name="api", url=url, **options))

    async def once() -> Facts:
        try:
            return await source.collect()
        finally:
            await source.close()

    return asyncio.run(once()).health[0]


def failing(info: HealthInfo) -> dict[str, str | None]:
    return {c.name: c.detail for c in info.failing_components}


def test_the_failing_component_is_named(server: Server) -> None:
    server.answer(
        "/health",
        503,
        {
            "status": "degraded",
            "checks": {
                "redis": {"status": "ok"},
                "database": {"status": "ok"},
                "whatsapp": {"status": "disconnected"},
            },
        },
    )
    info = check(f"{server.url}/health")
    assert not info.ok and info.status_code == 503 and info.overall == "degraded"
    assert [c.name for c in info.components] == ["redis", "database", "whatsapp"]
    assert failing(info) == {"whatsapp": "disconnected"}
    assert info.error is None and info.latency_ms is not None and info.latency_ms > 0
    snapshot = Alerting(Config(), once=True)(Snapshot(taken_at=time.time(), instance="t", sources={}, health=(info,)))
    assert assess(snapshot) == (Level.CRITICAL, ["health api failing: whatsapp disconnected"])

    server.answer("/health", 200, {"status": "ok", "checks": {"redis": {"status": "ok"}, "whatsapp": "connected"}})
    healthy = check(f"{server.url}/health")
    assert healthy.ok and healthy.overall == "ok" and failing(healthy) == {}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            {
                "status": "DOWN",
                "components": {
                    "db": {"status": "UP", "details": {"database": "PostgreSQL"}},
                    "redis": {"status": "DOWN", "details": {"error": "Connection refused"}},
                    "mail": {"status": "UP", "components": {"smtp": {"status": "DOWN"}}},
                },
            },
            {"redis": "DOWN", "mail/smtp": "DOWN"},
            id="spring-actuator",
        ),
        pytest.param(
            {
                "status": "error",
                "info": {"database": {"status": "up"}},
                "error": {"whatsapp": {"status": "down", "message": "session closed"}},
                "details": {"database": {"status": "up"}, "whatsapp": {"status": "down", "message": "session closed"}},
            },
            {"whatsapp": "down: session closed"},
            id="nestjs-terminus",
        ),
        pytest.param(
            {
                "status": "warn",
                "checks": {
                    "redis:responseTime": [{"status": "pass", "observedValue": 2}],
                    "whatsapp:connected": [{"status": "pass"}, {"status": "fail", "output": "QR code expired"}],
                },
            },
            {"whatsapp:connected": "fail: QR code expired"},
            id="rfc-health-json",
        ),
        pytest.param(
            {"status": "UP", "checks": [{"name": "db", "status": "UP"}, {"name": "amocrm", "status": "DOWN"}]},
            {"amocrm": "DOWN"},
            id="microprofile-list",
        ),
        pytest.param(
            [{"name": "redis", "healthy": True}, {"name": "bot", "healthy": False, "error": "polling stopped"}],
            {"bot": "false: polling stopped"},
            id="top-level-list",
        ),
        pytest.param(
            {"redis": "ok", "db": True, "whatsapp": False, "version": "1.2.3", "uptime": 1234},
            {"whatsapp": "false"},
            id="flat",
        ),
    ],
)
def test_common_health_shapes(server: Server, body: Any, expected: dict[str, str]) -> None:
    server.answer("/health", 200, body)
    info = check(f"{server.url}/health")
    assert failing(info) == expected
    assert not info.ok


def test_plain_text_html_and_garbage_bodies(server: Server) -> None:
    server.answer("/ok", 200, "OK\n", "text/plain")
    assert check(f"{server.url}/ok").ok
    page = "<html><head><title>502 Bad Gateway</title></head><body><center>nginx</center></body></html>"
    server.answer("/html", 502, page, "text/html")
    info = check(f"{server.url}/html")
    assert not info.ok and info.error == "answered 502 with an HTML page, not JSON: 502 Bad Gateway"
    server.answer(
        "/garbage", 200, "\x00\x01 segfault at 0x0000 core dumped, please restart the worker now", "text/plain"
    )
    info = check(f"{server.url}/garbage")
    assert not info.ok and info.error is not None and info.error.startswith("answered 200 with a body that is not JSON")
    server.answer("/error", 500, {"status": "error", "version": "1.4.2"})
    assert check(f"{server.url}/error").error == "says error (HTTP 500)"
    server.answer("/empty", 204, b"")
    assert check(f"{server.url}/empty").ok
    assert check(f"{server.url}/empty", expect_status=[200]).error == "HTTP 204 No Content"


def test_refused_and_slow_endpoints_are_failing_checks_not_source_errors(server: Server) -> None:
    port = free_port()
    refused = check(f"http://127.0.0.1:{port}/health")
    assert not refused.ok and refused.error == f"connection refused at 127.0.0.1:{port}"
    assert refused.status_code is None
    server.answer("/slow", 200, {"status": "ok"}, delay=2)
    slow = check(f"{server.url}/slow", timeout=0.5)
    assert not slow.ok and slow.error == "no answer within 500ms"


def test_a_password_in_the_url_is_never_shown(server: Server) -> None:
    server.answer("/health", 500, {"status": "error"})
    url = server.url.replace("http://", "http://admin:hunter2-secret@") + "/health"
    info = check(url)
    assert "hunter2-secret" not in repr(info)
    assert info.url == server.url.replace("http://", "http://admin:***@") + "/health"


METRICS = """\
# HELP http_requests_total Requests handled.
# TYPE http_requests_total counter
http_requests_total{method="GET",code="200"} 1027
http_requests_total{method="POST",code="500"} 3
http_requests_total{method="GET",code="500",path="/say \\"hi\\", please"} 4
# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 1.2582912e+08
up 0
queue_size{queue="incoming"} 162 1714557600000
"""


def metrics(url: str, selected: list[Any]) -> dict[str, Any]:
    source = PrometheusSource(PrometheusConfig(name="app", url=url, metrics=selected))

    async def once() -> Facts:
        try:
            return await source.collect()
        finally:
            await source.close()

    return {c.name: c for c in asyncio.run(once()).checks}


def test_prometheus_selected_metrics_summed_with_thresholds(server: Server) -> None:
    server.answer("/metrics", 200, METRICS, "text/plain; version=0.0.4")
    found = metrics(
        f"{server.url}/metrics",
        [
            "process_resident_memory_bytes",
            {"select": 'http_requests_total{code="500"}', "name": "HTTP 500s", "warn": 1, "crit": 100},
            "http_requests_total",
            {"select": "up", "crit_below": 0},
            {"select": 'queue_size{queue="incoming"}', "warn": 100, "crit": 1000},
            "no_such_metric",
        ],
    )
    assert found["process_resident_memory_bytes"].value == 125829120.0
    assert found["process_resident_memory_bytes"].level is Level.OK
    assert found["HTTP 500s"].value == 7 and found["HTTP 500s"].level is Level.WARNING
    assert found["http_requests_total"].value == 1034
    assert found["up"].level is Level.CRITICAL and found["up"].detail == "0"
    assert found['queue_size{queue="incoming"}'].value == 162
    assert found["no_such_metric"].level is Level.WARNING and found["no_such_metric"].value is None
    assert found["no_such_metric"].detail == "no series matches no_such_metric"


def test_prometheus_endpoint_that_cannot_be_read_is_the_source_s_error(server: Server) -> None:
    server.answer("/metrics", 200, "<html><body>login</body></html>", "text/html")
    with pytest.raises(SourceUnavailable) as caught:
        metrics(f"{server.url}/metrics", ["up"])
    assert str(caught.value) == f"{server.url}/metrics answered with an HTML page, not Prometheus metrics"
    with pytest.raises(SourceUnavailable) as caught:
        metrics(f"{server.url}/nowhere", ["up"])
    assert str(caught.value) == f"{server.url}/nowhere answered HTTP 404 Not Found"
