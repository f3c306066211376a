"""A small Telegram Bot API client on httpx: one `call` for any method, and errors classified by what to do next.

The token is part of every request URL, so nothing here ever logs a URL, a request or an httpx exception's
text: errors are rebuilt from the method name, the HTTP status and Telegram's own `description`. httpx is
imported lazily, so a config without Telegram never loads it.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from opstui.errors import NotifyError
from opstui.redact import redact

if TYPE_CHECKING:
    from opstui._httpx import httpx


class Failure(enum.Enum):
    """What an error means for the sender."""

    RATE_LIMITED = "rate_limited"
    """429: wait `retry_after`, the message was not sent."""
    TRANSIENT = "transient"
    """5xx, a non-JSON body, a network error: back off and retry."""
    MIGRATED = "migrated"
    """The group became a supergroup: resend to `migrate_to`."""
    BAD_MARKUP = "bad_markup"
    """"can't parse entities": resend once as plain text."""
    REJECTED = "rejected"
    """This message will never be accepted (too long, empty, another 400): give up on it, not on the chat."""
    CHAT_GONE = "chat_gone"
    """Chat not found, bot blocked or kicked, user deactivated: nothing can reach this chat until someone acts."""
    UNAUTHORIZED = "unauthorized"
    """401 / 404: the token or the api_base is wrong; nothing can be sent at all."""


_CHAT_GONE = (
    "chat not found",
    "blocked by the user",
    "kicked from",
    "not a member",
    "user is deactivated",
    "can't initiate conversation",
    "chat was deleted",
    "group chat was deactivated",
    "chat_id is empty",
)
_RETRY_AFTER = re.compile(r"retry after (\d+)", re.IGNORECASE)


class TelegramError(NotifyError):
    """Telegram said no, or could not be reached; `failure` says what to do about it."""

    def __init__(
        self,
        message: str,
        *,
        failure: Failure,
        status: int | None = None,
        description: str | None = None,
        retry_after: float | None = None,
        migrate_to: int | None = None,
        maybe_delivered: bool = False,
    ) -> None:
        super().__init__(redact(message), permanent=failure in (Failure.CHAT_GONE, Failure.UNAUTHORIZED))
        self.failure = failure
        self.status = status
        self.description = description
        self.retry_after = retry_after
        self.migrate_to = migrate_to
        self.maybe_delivered = maybe_delivered
        """A network error after the request was written: Telegram may have delivered it (at-least-once)."""


def classify(method: str, status: int, body: Any, headers: Mapping[str, str]) -> TelegramError:
    """The error for a response that is not `{"ok": true}` (status and parsed JSON body, or None if not JSON)."""
    if not isinstance(body, dict):
        return TelegramError(
            f"{method}: Telegram answered HTTP {status} without a JSON body",
            failure=Failure.TRANSIENT if status >= 500 or status == 429 else Failure.REJECTED,
            status=status,
            retry_after=_header_seconds(headers),
        )
    raw_code, raw_parameters = body.get("error_code"), body.get("parameters")
    code: int = raw_code if isinstance(raw_code, int) else status
    description = str(body.get("description") or f"HTTP {status}")
    parameters: dict[str, Any] = raw_parameters if isinstance(raw_parameters, dict) else {}
    lowered = description.lower()
    message = f"{method}: Telegram answered {code}: {description}"
    failure = Failure.REJECTED
    retry_after: float | None = None
    migrate_to = parameters.get("migrate_to_chat_id")
    if code == 429 or status == 429:
        failure = Failure.RATE_LIMITED
        retry_after = _retry_after(parameters, description, headers)
    elif isinstance(migrate_to, int):
        failure = Failure.MIGRATED
    elif status >= 500 or code >= 500:
        failure = Failure.TRANSIENT
    elif code in (401, 404) or status in (401, 404):
        failure = Failure.UNAUTHORIZED
    elif "can't parse entities" in lowered:
        failure = Failure.BAD_MARKUP
    elif code == 403 or any(needle in lowered for needle in _CHAT_GONE):
        failure = Failure.CHAT_GONE
    return TelegramError(
        message,
        failure=failure,
        status=status,
        description=description,
        retry_after=retry_after,
        migrate_to=migrate_to if isinstance(migrate_to, int) else None,
    )


def _retry_after(parameters: Mapping[str, Any], description: str, headers: Mapping[str, str]) -> float:
    value = parameters.get("retry_after")
    if isinstance(value, int | float) and value >= 0:
        return float(value)
    match = _RETRY_AFTER.search(description)
    if match:
        return float(match.group(1))
    return _header_seconds(headers) or 5.0


def _header_seconds(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")
    return float(value) if value is not None and value.strip().isdigit() else None


class TelegramBot:
    """`await bot.call("sendMessage", chat_id=..., text=...)` -> Telegram's `result`, or TelegramError."""

    def __init__(
        self,
        token: str,
        *,
        api_base: str = "https://api.telegram.org",
        timeout: float = 15.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        from opstui._httpx import httpx

        self._token = token
        self._api_base = api_base.rstrip("/")
        self._client = httpx.AsyncClient(timeout=timeout, transport=transport, follow_redirects=False)

    def __repr__(self) -> str:
        return f"<TelegramBot at {self._api_base}>"

    async def call(self, method: str, *, read_timeout: float | None = None, **params: Any) -> Any:
        """Call one Bot API method with JSON parameters (None values are left out)."""
        from opstui._httpx import httpx

        url = f"{self._api_base}/bot{self._token}/{method}"
        body = {k: v for k, v in params.items() if v is not None}
        timeout = httpx.USE_CLIENT_DEFAULT if read_timeout is None else httpx.Timeout(read_timeout + 10.0)
        try:
            response = await self._client.post(url, json=body, timeout=timeout)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # The request never left: retrying cannot duplicate anything.
            raise TelegramError(
                f"{method}: cannot reach {self._host()} ({_reason(exc)})", failure=Failure.TRANSIENT
            ) from None
        except httpx.HTTPError as exc:
            raise TelegramError(
                f"{method}: connection to {self._host()} failed mid-request ({_reason(exc)})",
                failure=Failure.TRANSIENT,
                maybe_delivered=True,
            ) from None
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code == 200 and isinstance(data, dict) and data.get("ok") is True:
            return data.get("result")
        raise classify(method, response.status_code, data, response.headers)

    async def send_message(
        self, chat_id: int | str, text: str, *, html: bool = True, thread_id: int | None = None
    ) -> dict[str, Any]:
        result = await self.call(
            "sendMessage",
            chat_id=chat_id,
            text=text,
            parse_mode="HTML" if html else None,
            message_thread_id=thread_id,
            link_preview_options={"is_disabled": True},
        )
        return result if isinstance(result, dict) else {}

    def _host(self) -> str:
        return self._api_base.split("://", 1)[-1]

    async def aclose(self) -> None:
        await self._client.aclose()


def _reason(exc: Exception) -> str:
    # httpx's own text can carry the request URL (and with it the token): keep only the exception type and
    # the OS reason, which never does.
    cause = exc.__cause__ or exc.__context__
    while cause is not None and not isinstance(cause, OSError) and (cause.__cause__ or cause.__context__):
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, OSError) and cause.strerror:
        return f"{type(exc).__name__}: {cause.strerror}"
    return type(exc).__name__
