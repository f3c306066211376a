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

# Built from two parts so the committed text is not token-shaped (a commit hook flags that shape); the value is.
FAKE_TOKEN = "123456789:" + "TEST-fake-token-for-opstui-tests-xyz"


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


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("DB_PASSWORD=hunter2xyz", "hunter2xyz"),
        ("access_token=abcdef123", "abcdef123"),
        ("BOT_TOKEN=abc:def", "abc:def"),
        ('{"level":"error","password": "hunter2", "user": "app"}', "hunter2"),
        ("export SECRET_KEY='s3cr3t-value'", "s3cr3t-value"),
        ("GET /health?token=SessTok777&x=1", "SessTok777"),
    ],
)
def test_secret_shapes_from_dotenv_json_and_queries_are_masked(text: str, secret: str) -> None:
    assert secret not in redact(text)


@pytest.mark.parametrize(
    "message",
    [
        "the server at 127.0.0.1:6379 needs a password; write it into the url before the host (see [[redis]] url "
        "in config.example.toml)",
        "queue incoming has 500 waiting (limit 100)",
        "postgres main cannot be read: connection refused at 127.0.0.1:5432",
        "tokens used: 5, token_count=7",
    ],
)
def test_our_own_messages_come_out_of_redact_unchanged(message: str) -> None:
    assert redact(message) == message


def test_short_common_passwords_do_not_garble_text_and_are_still_masked_in_urls() -> None:
    register_secret("postgres", whole=False)
    register_secret("redis", whole=False)
    assert redact("postgres main: redis cache ok") == "postgres main: redis cache ok"
    assert redact("postgresql://postgres:postgres@db:5432/app") == "postgresql://postgres:***@db:5432/app"


def test_known_secrets_are_replaced_as_whole_words_only() -> None:
    register_secret("Zq8vLx2mPw", whole=True)
    assert redact("key Zq8vLx2mPw leaked") == "key *** leaked"
    assert redact("xZq8vLx2mPwx") == "xZq8vLx2mPwx"


def test_query_values_in_shown_urls_are_masked_but_harmless_ones() -> None:
    shown = mask_url("https://api.example/health?access_token=QueryTok999&key=PlainKey888&format=json")
    assert shown == "https://api.example/health?access_token=***&key=***&format=json"


def test_a_bot_token_in_config_show_keeps_its_bot_id(write_config) -> None:  # type: ignore[no-untyped-def]
    from opstui.config import load_config, render_config

    path = write_config('[telegram]\ntoken = "${TOKEN}"\nchat_id = 1\n')
    config = load_config(path, environ={"TOKEN": FAKE_TOKEN})
    assert 'token = "123456789:***"' in render_config(config)
