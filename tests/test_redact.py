"""Secrets never show: known values and secret-shaped strings are masked in text and in log records."""

from __future__ import annotations

import logging

import pytest

from opstui.redact import (
    RedactingFilter,
    install_log_redaction,
    mask_token,
    mask_url,
    redact,
    register_secret,
)

FAKE_TOKEN = "123456789:TEST-fake-token-for-opstui-tests-xyz"


def test_mask_token_keeps_the_bot_id() -> None:
    assert mask_token(FAKE_TOKEN) == "123456789:***"
    assert mask_token("garbage") == "***"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cretpw@10.0.0.1:6379/0", "redis://:***@10.0.0.1:6379/0"),
        ("postgresql://app:p%40ss@db.internal:5432/crm", "postgresql://app:***@db.internal:5432/crm"),
        ("postgresql://app@db/crm?password=abc123", "postgresql://app@db/crm?password=***"),
        ("http://127.0.0.1:3000/health", "http://127.0.0.1:3000/health"),
    ],
)
def test_mask_url(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def test_redact_masks_shapes_and_registered_secrets() -> None:
    register_secret("correct-horse-battery")
    text = (
        f"POST https://api.telegram.org/bot{FAKE_TOKEN}/sendMessage "
        "DATABASE_URL=postgres://u:pw1234@h/db password=hunter22 Authorization: Bearer abcdefghijkl "
        "the value correct-horse-battery leaked"
    )
    out = redact(text)
    for secret in ("TEST-fake-token", "pw1234", "hunter22", "abcdefghijkl", "correct-horse-battery"):
        assert secret not in out
    assert "bot123456789:***/sendMessage" in out


def test_log_records_are_redacted_including_args_and_exceptions(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("opstui.test.redact")
    handler_filter = RedactingFilter()
    caplog.handler.addFilter(handler_filter)
    try:
        raise RuntimeError(f"request to https://api.telegram.org/bot{FAKE_TOKEN}/getMe failed")
    except RuntimeError:
        logger.exception("sending via %s", f"https://api.telegram.org/bot{FAKE_TOKEN}/sendMessage")
    caplog.handler.removeFilter(handler_filter)
    assert "TEST-fake-token" not in caplog.text
    assert "bot123456789:***/sendMessage" in caplog.text


def test_httpx_request_logging_is_silenced() -> None:
    install_log_redaction()
    assert logging.getLogger("httpx").getEffectiveLevel() >= logging.WARNING
    assert logging.getLogger("httpcore").getEffectiveLevel() >= logging.WARNING
