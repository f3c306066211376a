"""Building blocks shared by every config section: strict models, durations, secrets."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer

from opstui.redact import SAFE_QUERY
from opstui.units import format_duration, parse_duration


class Section(BaseModel):
    """A config table: unknown keys are errors (typos are caught), values are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]
"""Seconds; written in config as `30s`, `5m`, `1h30m` or a plain number of seconds."""

PositiveDuration = Annotated[Duration, Field(gt=0)]
"""A Duration that must be more than zero: a source's interval or timeout ("0s" would fail every read)."""


class _SecretMark:
    """Marks a str field whose whole value is a secret (a token, a password)."""


class _SecretUrlMark:
    """Marks a URL/DSN field whose password part is a secret (the rest is useful to show)."""


SECRET = _SecretMark()
SECRET_URL = _SecretUrlMark()

Secret = Annotated[str, SECRET]
SecretUrl = Annotated[str, SECRET_URL]


_ENCODE = (
    "a password with # ? / @ or : in it must be percent-encoded (# as %23, ? as %3F, / as %2F, @ as %40, : as %3A)"
)


def url_with_scheme(schemes: tuple[str, ...], example: str, *, empty: bool = False) -> Any:
    """A validator of a URL field whose scheme must be one of `schemes`; with `empty`, "" (none) is allowed too.

    It never repeats urllib's own message: for a password with an unencoded `#` urllib takes the password for the
    port and quotes it ("Port could not be cast to integer value as '<password>'"), before any redaction exists.
    """

    def check(value: str) -> str:
        if empty and not value:
            return value
        try:
            parts = urlsplit(value)
        except ValueError:
            raise ValueError(
                f"the host part is not valid (an IPv6 address goes in [brackets]); expected a URL like '{example}'"
            ) from None
        try:
            parts.port  # noqa: B018  (raises ValueError for a port that is not a number)
        except ValueError:
            raise ValueError(
                f"the part after ':' in the host is not a port number; {_ENCODE}; expected a URL like '{example}'"
            ) from None
        if "@" in parts.fragment and "@" not in parts.netloc:
            # A password of digits before its '#' reads as a valid port: the URL would point at the wrong host.
            raise ValueError(f"a '#' before the '@' cuts the URL short; {_ENCODE}")
        if parts.scheme not in schemes:
            raise ValueError(f"expected a URL like '{example}'")
        return value

    return AfterValidator(check)


def iter_secrets(model: BaseModel) -> Iterator[tuple[str, bool]]:
    """Every secret value in a loaded config, with whether it is a secret by itself (`whole`).

    Whole: secret fields and the values of `dict[str, Secret]` fields (an action's environment, an endpoint's
    headers). Not whole: the password and the query values inside URL fields (shown masked with their URL).
    """
    from urllib.parse import parse_qsl

    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        marks = field.metadata
        if any(isinstance(m, _SecretMark) for m in marks) and isinstance(value, str):
            yield value, True
        elif _is_secret_map(field.annotation) and isinstance(value, dict):
            yield from ((v, True) for v in value.values() if isinstance(v, str))
        elif any(isinstance(m, _SecretUrlMark) for m in marks) and isinstance(value, str):
            try:
                parts = urlsplit(value)
                password = parts.password
                query = [v for k, v in parse_qsl(parts.query) if k.lower() not in SAFE_QUERY]
            except ValueError:
                password, query = None, []
            # postgres:postgres: a password equal to the user name is masked in its URL, not everywhere.
            yield from ((secret, False) for secret in (password, *query) if secret and secret != parts.username)
        yield from _iter_nested(value)


def _is_secret_map(annotation: Any) -> bool:
    args = get_args(annotation)
    return get_origin(annotation) is dict and len(args) == 2 and SECRET in get_args(args[1])[1:]


def _iter_nested(value: Any) -> Iterator[tuple[str, bool]]:
    if isinstance(value, BaseModel):
        yield from iter_secrets(value)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _iter_nested(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _iter_nested(item)
