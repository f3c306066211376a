"""Masking of secrets in everything opstui prints, logs, stores or shows on a screen.

Two layers: secrets we know (values from the config, registered at load time) are replaced wherever they
appear, and shapes that are secrets whatever their value (bot tokens, passwords in URLs, `password=...`
pairs, bearer tokens) are masked by pattern, so a secret we were never told about still does not leak.
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
# password=..., passwd: ..., secret=..., token=..., api_key=... in DSNs, query strings and log lines.
_KEY_VALUE = re.compile(
    r"(?i)(?P<key>\b(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key)\b\s*[=:]\s*)"
    r"(?P<quote>['\"]?)(?P<value>[^\s'\"&;,]+)"
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")

_lock = threading.Lock()
_known: set[str] = set()


def mask_token(token: str) -> str:
    """`8147295667:AAE...` -> `8147295667:***`; anything else -> `***`."""
    bot_id, sep, _ = token.partition(":")
    if sep and bot_id.isdigit():
        return f"{bot_id}:{MASK}"
    return MASK


def mask_url(url: str) -> str:
    """Hide the password of a URL or DSN (`redis://:pw@host` -> `redis://:***@host`) and any secret query value."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact(url)
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


def register_secret(value: str | None) -> None:
    """Remember a secret so `redact` replaces it wherever it shows up, whatever its shape."""
    if not value or len(value) < 4:  # masking a 1-3 character string would mangle ordinary text
        return
    with _lock:
        _known.add(value)


def redact(text: str) -> str:
    """Mask every known secret and every secret-shaped substring in `text`."""
    if not text:
        return text
    with _lock:
        known = sorted(_known, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, mask_token(secret) if _BOT_TOKEN.fullmatch(secret) else MASK)
    text = _BOT_TOKEN.sub(lambda m: f"{m.group(1)}:{MASK}", text)
    text = _URL_PASSWORD.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:{MASK}@", text)
    text = _KEY_VALUE.sub(lambda m: f"{m.group('key')}{m.group('quote')}{MASK}", text)
    return _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", text)


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
