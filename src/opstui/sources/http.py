"""HTTP endpoints: health checks down to the failing component, and selected Prometheus metrics.

A health check's answer is the fact, whatever it is: an endpoint that refuses, times out, or answers with an
HTML error page is reported as a failing check with that reason (and the source itself stays healthy, since it
did its job); what a component says ("whatsapp": "disconnected") is shown per component. A Prometheus endpoint
that cannot be read is the source's error, since then there is no value to show.
"""

from __future__ import annotations

import asyncio
import html
import json
import math
import re
import socket
import ssl
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import opstui
from opstui.config.data import HealthConfig, PrometheusConfig, PrometheusMetricConfig
from opstui.errors import SourceError, SourceTimeout, SourceUnavailable
from opstui.model import CheckInfo, Facts, HealthComponent, HealthInfo, Level
from opstui.redact import mask_url
from opstui.sources.base import Source
from opstui.units import format_duration

if TYPE_CHECKING:
    from opstui._httpx import httpx


def _httpx() -> Any:
    """httpx, imported when the first client is made rather than with this module: building the sources (before
    the TUI's first frame) should not wait for it (docs/performance.md)."""
    from opstui._httpx import httpx

    return httpx


MAX_HEALTH_BODY = 1024 * 1024
MAX_METRICS_BODY = 32 * 1024 * 1024

GOOD = frozenset(
    {"ok", "up", "pass", "passed", "passing", "healthy", "green", "connected", "online", "ready", "available"}
    | {"success", "succeeded", "running", "true", "alive", "good", "operational"}
)
"""Status words that mean a component (or the whole service) is fine, compared lower-cased."""
OVERALL_KEYS = ("status", "state", "health", "overall", "healthy", "ok")
COMPONENT_KEYS = ("checks", "components", "details", "dependencies", "services", "results", "entries")
STATUS_KEYS = ("status", "state", "health", "healthy", "ok", "connected", "up", "alive")
REASON_KEYS = ("message", "error", "reason", "description", "output", "detail", "details")
NOT_COMPONENTS = frozenset(
    {"status", "state", "health", "overall", "healthy", "ok", "version", "uptime", "timestamp", "time", "ts"}
    | {"date", "name", "service", "description", "notes", "links", "releaseid", "serviceid", "info", "error"}
)
"""Top-level keys that describe the service, not a component, in bodies like {"redis": "ok", "version": "1.2"}."""


class HttpSource(Source):
    """One endpoint and its own httpx client (connection reuse between ticks, its own timeouts and TLS)."""

    def __init__(self, name: str, url: str, *, interval: float, timeout: float, verify: bool = True) -> None:
        # httpx's timeout ends a request at `timeout`; the engine's is the backstop.
        super().__init__(name, interval=interval, timeout=timeout + 2.0)
        self.url = url
        self.shown_url = mask_url(url)
        parts = urlsplit(url)
        self.address = f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
        self.request_timeout = timeout
        self.verify = verify
        self._client: httpx.AsyncClient | None = None

    async def client(self) -> httpx.AsyncClient:
        if self._client is None:
            # Building the client loads the CA bundle (tens of milliseconds): not on the event loop.
            made: httpx.AsyncClient = await asyncio.to_thread(
                _httpx().AsyncClient,
                timeout=self.request_timeout,
                verify=self.verify,
                follow_redirects=True,
                headers={"User-Agent": f"opstui/{opstui.__version__}"},
            )
            self._client = made
        return self._client

    async def fetch(self, accept: str, limit: int) -> tuple[int, str, str, bytes, float]:
        """GET the URL: (status, reason, content type, body up to `limit` bytes, latency in ms).

        Raises SourceError with the reason a person can act on (refused, unresolvable, TLS, timeout).
        """
        client = await self.client()
        httpx = _httpx()
        started = time.perf_counter()
        try:
            # httpx's timeout bounds each phase; a server that trickles its body must be cut off as a whole,
            # so that it is a failing check of ours and not a source the engine had to give up on.
            async with (
                asyncio.timeout(self.request_timeout),
                client.stream("GET", self.url, headers={"Accept": accept}) as response,
            ):
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) >= limit:
                        break
                latency = (time.perf_counter() - started) * 1000
                kind = response.headers.get("content-type", "")
                return response.status_code, response.reason_phrase, kind, bytes(body[:limit]), latency
        except (httpx.TimeoutException, TimeoutError):
            raise SourceTimeout(f"no answer within {format_duration(self.request_timeout)}") from None
        except httpx.ConnectError as exc:
            raise SourceUnavailable(self._connect_problem(exc)) from None
        except httpx.RemoteProtocolError as exc:
            raise SourceUnavailable(f"{self.address} closed the connection without a valid answer ({exc})") from None
        except httpx.HTTPError as exc:
            raise SourceUnavailable(f"{self.address}: {exc or type(exc).__name__}") from None

    def _connect_problem(self, exc: BaseException) -> str:
        """What went wrong connecting: httpx says "All connection attempts failed" and keeps the reason beneath."""
        chain = _chain(exc)
        if any(isinstance(e, ConnectionRefusedError) for e in chain):
            return f"connection refused at {self.address}"
        if any(isinstance(e, socket.gaierror) for e in chain):
            return f"cannot resolve the host of {self.shown_url}"
        tls = next((e for e in chain if isinstance(e, ssl.SSLError)), None)
        if tls is not None:
            return f"TLS with {self.address} failed: {tls} (verify_tls = false only for a self-signed test server)"
        return f"cannot connect to {self.address}: {chain[-1] or type(chain[-1]).__name__}"

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


def _chain(exc: BaseException) -> list[BaseException]:
    """An error and the errors that caused it, outermost first."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(chain) < 8:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    return chain


class HealthSource(HttpSource):
    kind = "health"
    provides = frozenset({"health"})

    def __init__(self, config: HealthConfig) -> None:
        super().__init__(
            f"health {config.name}",
            config.url,
            interval=config.interval,
            timeout=config.timeout,
            verify=config.verify_tls,
        )
        self.config = config
        self.detail = self.shown_url

    async def collect(self) -> Facts:
        try:
            status, reason, kind, body, latency = await self.fetch("application/json", MAX_HEALTH_BODY)
        except SourceError as exc:
            return Facts(health=(self._info(ok=False, error=str(exc)),))
        expected = status in self.config.expect_status if self.config.expect_status else 200 <= status < 300
        answer = read_health(body, kind)
        problem: str | None = None
        if answer.error is not None:
            problem = f"answered {status} {answer.error}"
        elif answer.failing:
            problem = None  # the failing components say what is wrong
        elif answer.good is False:
            problem = f"says {answer.overall} (HTTP {status})"
        elif not expected:
            problem = f"HTTP {status} {reason}".strip()
        ok = expected and problem is None and not answer.failing
        info = self._info(
            ok=ok,
            status_code=status,
            latency_ms=round(latency, 1),
            overall=answer.overall,
            components=tuple(answer.components),
            error=problem,
        )
        return Facts(health=(info,))

    def _info(self, *, ok: bool, **fields: Any) -> HealthInfo:
        return HealthInfo(
            key=self.name,  # one item per source: the source's name is its row key
            name=self.config.name,
            url=self.shown_url,
            ok=ok,
            source=self.name,
            **fields,
        )


@dataclass(slots=True)
class HealthAnswer:
    overall: str | None
    good: bool | None
    """What the overall status says: True fine, False not, None when the body has none."""
    components: list[HealthComponent]
    error: str | None = None

    @property
    def failing(self) -> bool:
        return any(not c.ok for c in self.components)


def read_health(body: bytes, content_type: str = "") -> HealthAnswer:
    """The overall status and the components of a health body, in the shapes services commonly use:
    {"status", "checks": {name: {"status"}}}, Spring's {"components"}, NestJS's {"info", "error", "details"},
    RFC draft health+json ({"checks": {"name:measure": [{"status"}]}}), lists of {"name", "status"},
    a flat {"redis": "ok", "db": true}, or a plain "OK"."""
    text = body.decode("utf-8", "replace").strip()
    if not text:
        return HealthAnswer(None, None, [])
    if "html" in content_type.lower() or text.startswith("<"):
        title = re.search(r"<title[^>]*>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
        shown = f": {html.unescape(title.group(1)).strip()[:80]}" if title else ""
        return HealthAnswer(None, None, [], error=f"with an HTML page, not JSON{shown}")
    try:
        data = json.loads(text)
    except ValueError:
        if len(text) <= 40 and "\n" not in text:
            return HealthAnswer(text, text.lower().rstrip(".!") in GOOD, [])
        return HealthAnswer(None, None, [], error=f"with a body that is not JSON: {text[:60]!r}")
    if isinstance(data, list):
        return HealthAnswer(None, None, list(_components(data)))
    if not isinstance(data, dict):
        word = _word(data)
        return HealthAnswer(word, _good(data), [])
    overall_value = next((data[k] for k in OVERALL_KEYS if k in data and _is_status(data[k])), None)
    overall = None if overall_value is None else _word(overall_value)
    good = None if overall_value is None else _good(overall_value)
    container = next((data[k] for k in COMPONENT_KEYS if isinstance(data.get(k), dict | list)), None)
    if container is None and (isinstance(data.get("info"), dict) or isinstance(data.get("error"), dict)):
        container = {**(data.get("info") or {}), **(data.get("error") or {})}  # NestJS terminus without details
    if container is None:
        container = {k: v for k, v in data.items() if k.lower() not in NOT_COMPONENTS and _is_component(v)}
    return HealthAnswer(overall, good, list(_components(container)))


def _components(container: Any, prefix: str = "") -> Iterator[HealthComponent]:
    items: Iterable[tuple[str, Any]]
    if isinstance(container, dict):
        items = container.items()
    elif isinstance(container, list):
        items = ((_name_of(entry, i), entry) for i, entry in enumerate(container))
    else:
        return
    for name, value in items:
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            value = _worst(value)  # RFC health+json: one list of observations per component
        if not _is_component(value):
            continue
        full = f"{prefix}{name}"
        ok, detail = _judge(value)
        yield HealthComponent(name=full, ok=ok, detail=detail)
        if isinstance(value, dict) and isinstance(value.get("components"), dict):
            yield from _components(value["components"], f"{full}/")  # Spring's nested groups


def _name_of(entry: Any, index: int) -> str:
    if isinstance(entry, dict):
        for key in ("name", "id", "component", "componentId", "service", "check"):
            if isinstance(entry.get(key), str):
                return str(entry[key])
    return f"#{index + 1}"


def _worst(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return min(entries, key=lambda e: _judge(e)[0])


def _is_status(value: Any) -> bool:
    return isinstance(value, str | bool)


def _is_component(value: Any) -> bool:
    if isinstance(value, dict):
        return any(k in value and _is_status(value[k]) for k in STATUS_KEYS)
    return _is_status(value)


def _judge(value: Any) -> tuple[bool, str | None]:
    """(fine?, what it says): the status word, with the reason a failing component gives."""
    if isinstance(value, dict):
        status = next(value[k] for k in STATUS_KEYS if k in value and _is_status(value[k]))
        ok = _good(status)
        reason = next((value[k] for k in REASON_KEYS if isinstance(value.get(k), str) and value[k]), None)
        word = _word(status)
        return ok, (f"{word}: {reason}" if reason and not ok else word)
    return _good(value), _word(value)


def _good(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in GOOD


def _word(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).strip()


# ----------------------------------------------------------------------------------------------- Prometheus

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


@dataclass(frozen=True, slots=True)
class Selector:
    """A metric name with exact label matches, e.g. `http_requests_total{code="500"}`."""

    name: str
    labels: tuple[tuple[str, str], ...]
    needles: tuple[str, ...]
    """Each wanted label as it appears in an exposition line, name="escaped value", to skip lines cheaply."""

    @classmethod
    def parse(cls, text: str) -> Selector:
        text = text.strip()
        match = _NAME.match(text)
        if match is None:
            raise ValueError(f"{text!r} is not a metric selector such as 'http_requests_total{{code=\"500\"}}'")
        rest = text[match.end() :].strip()
        labels = _labels(rest) if rest else {}
        if labels is None:
            raise ValueError(f'{text!r}: labels must be exact matches such as {{code="500"}}')
        escape = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n"})
        needles = tuple(f'{name}="{value.translate(escape)}"' for name, value in sorted(labels.items()))
        return cls(match.group(0), tuple(sorted(labels.items())), needles)

    def matches(self, labels: dict[str, str]) -> bool:
        return all(labels.get(name) == value for name, value in self.labels)


def _labels(text: str) -> dict[str, str] | None:
    """`{a="x",b="y"}` as a dict; None when it is not a label set."""
    if not (text.startswith("{") and text.endswith("}")):
        return None
    inner, found, pos = text[1:-1], {}, 0
    while pos < len(inner):
        match = _LABEL.match(inner, pos)
        if match is None:
            return None
        value = match.group(2).replace(r"\"", '"').replace(r"\n", "\n").replace("\\\\", "\\")
        found[match.group(1)] = value
        pos = match.end()
    return found


def sum_selected(text: str, selectors: Sequence[Selector]) -> dict[Selector, float]:
    """The sum of the samples each selector matches, in Prometheus text (or OpenMetrics) format.

    One regular expression finds the lines of the selected metrics (the rest of the page is skipped in C), and a
    line's labels are parsed only when every label a selector asks for appears in it as written.
    """
    by_name: dict[str, list[Selector]] = {}
    for selector in selectors:
        by_name.setdefault(selector.name, []).append(selector)
    names = "|".join(re.escape(name) for name in sorted(by_name, key=len, reverse=True))
    # The label set runs to the last "}" of its line: only numbers follow it.
    lines = re.compile(rf"^({names})(\{{[^\n]*\}})?[ \t]+([^ \t\n]+)", re.MULTILINE)
    sums: dict[Selector, float] = {}
    for match in lines.finditer(text):
        name, label_text, number = match.groups()
        try:
            value = float(number)
        except ValueError:
            continue
        labels: dict[str, str] | None = None
        for selector in by_name[name]:
            if selector.labels:
                if not label_text or not all(needle in label_text for needle in selector.needles):
                    continue
                labels = labels if labels is not None else (_labels(label_text) or {})
                if not selector.matches(labels):
                    continue
            sums[selector] = sums.get(selector, 0.0) + value
    return sums


class PrometheusSource(HttpSource):
    kind = "prometheus"
    provides = frozenset({"checks"})

    def __init__(self, config: PrometheusConfig) -> None:
        super().__init__(f"prometheus {config.name}", config.url, interval=config.interval, timeout=config.timeout)
        self.config = config
        self.metrics = [(m, Selector.parse(m.select)) for m in config.metrics]
        self.detail = self.shown_url

    async def collect(self) -> Facts:
        status, reason, kind, body, _ = await self.fetch("text/plain;version=0.0.4", MAX_METRICS_BODY)
        text = body.decode("utf-8", "replace")
        if not 200 <= status < 300:
            raise SourceUnavailable(f"{self.shown_url} answered HTTP {status} {reason}".strip())
        if "html" in kind.lower() or text.lstrip().startswith("<"):
            raise SourceUnavailable(f"{self.shown_url} answered with an HTML page, not Prometheus metrics")
        sums = sum_selected(text, [selector for _, selector in self.metrics])
        return Facts(checks=tuple(self._check(m, s, sums.get(s)) for m, s in self.metrics))

    def _check(self, metric: PrometheusMetricConfig, selector: Selector, value: float | None) -> CheckInfo:
        name = metric.name or metric.select
        if value is None or math.isnan(value):
            level, detail = Level.WARNING, f"no series matches {metric.select}"
            value = None
        else:
            level, detail = _level(metric, value), f"{value:g}"
        return CheckInfo(
            key=f"{self.name}/{name}",
            name=name,
            kind="prometheus",
            level=level,
            source=self.name,
            detail=detail,
            value=value,
        )


def _level(metric: PrometheusMetricConfig, value: float) -> Level:
    def over(limit: float | None) -> bool:
        return limit is not None and value >= limit

    def under(limit: float | None) -> bool:
        return limit is not None and value <= limit

    if over(metric.crit) or under(metric.crit_below):
        return Level.CRITICAL
    if over(metric.warn) or under(metric.warn_below):
        return Level.WARNING
    return Level.OK
