"""Masking of secrets in everything opstui prints, logs, stores or shows on a screen.

Two layers: shapes that are secrets whatever their value (bot tokens, passwords in URLs, `password=...`,
`DB_PASSWORD=...` and `"password": "..."` pairs, bearer tokens) are masked by pattern, so a secret we were never
told about still does not leak; then secrets we know (values from the config, registered at load time) are
replaced where they stand as a whole word. A known secret shorter than MIN_KNOWN is left to the patterns:
replacing `redis` or `postgres` everywhere would garble every line and hide nothing the URL pattern does not.
"""

from __future__ import annotations

import logging
import re
import threading
from urllib.parse import urlsplit, urlunsplit

MASK = "***"

# A Telegram bot token: the bot id, a colon, then 30+ characters of [A-Za-z0-9_-].
_BOT_TOKEN = re.compile(r"(?<!\d)(\d{5,12}):[A-Za-z0-9_-]{30,}")
# user:password@ in any URL-like string (redis://, postgresql://, https://).
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@")
# password=..., DB_PASSWORD=..., access_token: ..., "password": "..." in DSNs, query strings, dotenv and JSON logs.
# A value that is already masked (a bot token's `123456:***`) is left as it is.
_KEY_VALUE = re.compile(
    r"(?i)(?P<key>(?<![A-Za-z0-9])[\"']?(?:[A-Za-z0-9]+[_-])*"
    r"(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|secret[_-]?key|private[_-]?key)"
    r"[\"']?\s*[=:]\s*)"
    r"(?P<quote>['\"]?)(?![^\s'\"&;,]*\*\*\*)(?P<value>[^\s'\"&;,]+)"
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")

# Query parameters whose values are safe to show; every other query value in a URL we show is masked, since
# health endpoints are often protected by `?token=`, `?key=` or `?access_token=`.
SAFE_QUERY = frozenset(
    {
        "format",
        "pretty",
        "verbose",
        "full",
        "db",
        "sslmode",
        "timeout",
        "connect_timeout",
        "application_name",
        "target_session_attrs",
    }
)
MIN_KNOWN = 10
"""Known secrets shorter than this are masked only by the patterns (in URLs, key=value pairs)."""

_lock = threading.Lock()
_known: dict[str, re.Pattern[str]] = {}


def mask_token(token: str) -> str:
    """`8147295667:AAE...` -> `8147295667:***`; anything else -> `***`."""
    bot_id, sep, _ = token.partition(":")
    if sep and bot_id.isdigit():
        return f"{bot_id}:{MASK}"
    return MASK


def mask_url(url: str) -> str:
    """Hide the password of a URL or DSN (`redis://:pw@host` -> `redis://:***@host`) and its query values
    (`?token=abc` -> `?token=***`), but for a few known to be harmless (`sslmode`, `format`, ...)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact(url)
    if parts.query:
        pairs = [pair.partition("=") for pair in parts.query.split("&")]
        parts = parts._replace(
            query="&".join(
                name + sep + (value if name.lower() in SAFE_QUERY or not sep else MASK) for name, sep, value in pairs
            )
        )
    if parts.password:
        user = parts.username or ""
        host = parts.hostname or ""
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        netloc = f"{user}:{MASK}@{host}"
        try:
            port = parts.port
        except ValueError:
            port = None
        if port is not None:
            netloc += f":{port}"
        parts = parts._replace(netloc=netloc)
    return redact(urlunsplit(parts))


def register_secret(value: str | None, *, whole: bool = False) -> None:
    """Remember a secret so `redact` replaces it wherever it stands as a whole word.

    `whole`: the value is a secret by itself (a token, a password field), not a part of something shown (a
    URL's password); such a value is remembered even when short, as long as it is not trivially short.
    """
    if not value or len(value) < (4 if whole else MIN_KNOWN):
        return
    with _lock:
        if value not in _known:
            _known[value] = re.compile(rf"(?<![A-Za-z0-9]){re.escape(value)}(?![A-Za-z0-9])")


def redact(text: str) -> str:
    """Mask every known secret and every secret-shaped substring in `text`."""
    if not text:
        return text
    text = _BOT_TOKEN.sub(lambda m: f"{m.group(1)}:{MASK}", text)
    text = _URL_PASSWORD.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:{MASK}@", text)
    text = _KEY_VALUE.sub(lambda m: f"{m.group('key')}{m.group('quote')}{MASK}", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", text)
    with _lock:
        known = sorted(_known.items(), key=lambda item: len(item[0]), reverse=True)
    for secret, pattern in known:
        if secret in text:
            text = pattern.sub(mask_token(secret) if _BOT_TOKEN.fullmatch(secret) else MASK, text)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that renders the record and masks secrets in it, including in exception text."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = redact(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        record.exc_info = None if record.exc_text else record.exc_info
        return True


# Libraries that log full request URLs (httpx at INFO, httpcore at DEBUG): the Bot API puts the token in the URL.
NOISY_URL_LOGGERS = ("httpx", "httpcore", "hpack", "apscheduler.executors.default")


def install_log_redaction() -> None:
    """Attach the redacting filter to every handler of the root logger and quiet URL-logging libraries."""
    root = logging.getLogger()
    for handler in root.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
    for name in NOISY_URL_LOGGERS:
        noisy = logging.getLogger(name)
        noisy.setLevel(max(noisy.level, logging.WARNING))
        if not any(isinstance(f, RedactingFilter) for f in noisy.filters):
            noisy.addFilter(RedactingFilter())
