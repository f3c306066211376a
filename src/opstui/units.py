"""Units as people write them in config and read them on screens: durations (`2s`, `1h30m`), ages, sizes."""

from __future__ import annotations

import math
import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(value: object) -> float:
    """Seconds from a number (already seconds) or a string such as `90s`, `5m` or `1h30m`."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '30s', '5m' or '1h', not true/false")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        pos, seconds = 0, 0.0
        for match in _PART.finditer(text):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _UNITS[match.group(2)]
            pos = match.end()
        if not text or pos != len(text):
            raise ValueError(f"'{value}' is not a duration; write it like '30s', '5m', '1h30m' or '1d'")
    else:
        raise ValueError("expected a duration such as '30s', '5m' or '1h'")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("a duration must be zero or more")
    return seconds


def format_duration(seconds: float) -> str:
    """The config spelling of a duration: 2.0 -> '2s', 90.0 -> '1m30s', 0.25 -> '250ms'."""
    if seconds < 1 and seconds != 0:
        return f"{round(seconds * 1000)}ms"
    total = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if total >= size:
            count, total = divmod(total, size)
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def format_age(seconds: float | None) -> str:
    """How long ago, for screens and messages: '4s', '3m', '2h 5m', '3d 4h'; 'never' when there is no time."""
    if seconds is None or not math.isfinite(seconds):
        return "never"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{int(seconds)}s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h" if hours else f"{days}d"


def format_bytes(size: float | None) -> str:
    """1536 -> '1.5 KiB', 0 -> '0 B', None -> '-'."""
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(i?)B?", re.IGNORECASE)


def parse_size(value: object) -> int:
    """Bytes from a number (already bytes) or a string such as `512KB`, `64MB` or `1GiB` (KB = KiB = 1024)."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as '64MB', not true/false")
    if isinstance(value, int | float) and value >= 0:
        return int(value)
    match = _SIZE.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"{value!r} is not a size; write it like '512KB', '64MB' or '1GB'")
    power = " KMGT".index(match.group(2).upper() or " ")
    return int(float(match.group(1)) * 1024**power)


def parse_time(value: object) -> float | None:
    """Unix seconds from a time as applications store it: unix seconds or milliseconds (a number, or digits as
    text or bytes), or ISO 8601 text (without a zone it is taken as UTC). None when it is none of these."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        text = value.strip()
        if "-" in text[1:] or ":" in text:  # a date (log lines have one each): no number to try first
            return _iso_time(text)
        try:
            value = float(text)
        except ValueError:
            return _iso_time(text)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        return None
    return value / 1000.0 if value > 1e11 else float(value)


def _iso_time(text: str) -> float | None:
    from datetime import UTC, datetime

    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
