"""Telegram HTML for notifications: every dynamic string escaped, split on line boundaries under the limit.

Messages are built from self-contained lines (a tag opened on a line is closed on it), so a message can be cut
between any two lines without breaking markup. Telegram counts its 4096-character limit in code points of the
text after tags are stripped and entities decoded; we pack to a budget a little under it.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from opstui.units import format_age

BUDGET = 4000
"""Characters per message: under Telegram's 4096, with room for a part marker."""
_TAG = re.compile(r"<[^>]*>")

ICONS = {"critical": "🔴", "warning": "🟠", "ok": "🟢"}
RESOLVED = "✅"
REMINDER = "🔁"
ESCALATED = "⏫"


def esc(value: object) -> str:
    """Escape a dynamic value for Telegram HTML (`<`, `>`, `&` and quotes)."""
    return html.escape(str(value), quote=True)


def visible_len(fragment: str) -> int:
    """The length Telegram checks: tags removed, entities decoded, in code points."""
    return len(html.unescape(_TAG.sub("", fragment)))


def to_plain(fragment: str) -> str:
    """The same message without markup, for the one plain-text retry after "can't parse entities"."""
    return html.unescape(_TAG.sub("", fragment))


def split_lines(lines: Sequence[str], budget: int = BUDGET) -> list[str]:
    """Pack whole lines into messages of at most `budget` visible characters; never cut inside a line.

    A single line longer than the budget is turned into escaped plain text and cut by code points.
    """
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for line in lines:
        length = visible_len(line)
        if length > budget:
            if current:
                chunks.append("\n".join(current))
                current, size = [], 0
            plain = to_plain(line)
            chunks.extend(esc(plain[i : i + budget]) for i in range(0, len(plain), budget))
            continue
        extra = length + (1 if current else 0)
        if current and size + extra > budget:
            chunks.append("\n".join(current))
            current, size, extra = [], 0, length
        current.append(line)
        size += extra
    if current:
        chunks.append("\n".join(current))
    return chunks


def clock(t: float | None, tz: ZoneInfo) -> str:
    """08:15 +05: a time of day in the configured timezone, with its abbreviation."""
    if t is None:
        return "?"
    return datetime.fromtimestamp(t, UTC).astimezone(tz).strftime("%H:%M %Z")


def render_alerts(items: Sequence[Mapping[str, Any]], *, tz: ZoneInfo) -> list[str]:
    """The lines of one message about alert transitions (payloads as the alert service queues them).

    One transition reads as a headline for the phone's lock screen; several get a count first. Alerts folded
    under a root cause in the same message are listed under it instead of on their own.
    """
    keys = {item["key"] for item in items}
    nested: dict[str, list[Mapping[str, Any]]] = {}
    top: list[Mapping[str, Any]] = []
    for item in items:
        cause = item.get("cause")
        if cause and cause in keys and item["kind"] == "firing":
            nested.setdefault(cause, []).append(item)
        else:
            top.append(item)
    instance = str(items[0].get("instance", ""))
    lines: list[str] = []
    if len(top) > 1:
        counts: dict[str, int] = {}
        for item in items:
            counts[item["kind"]] = counts.get(item["kind"], 0) + 1
        said = ", ".join(f"{n} {_KIND_WORDS[kind]}" for kind, n in counts.items())
        lines.append(f"{_icon(_worst(items))} <b>{esc(instance)}: {esc(said)}</b>")
    for item in top:
        if item.get("cause") in keys:
            item = {**item, "cause_summary": None}  # its cause is in this very message
        lines.extend(_item_lines(item, tz=tz, instance=instance, alone=len(top) == 1))
        children = nested.get(item["key"], [])
        if children:
            lines.append(f"   also affected ({len(children)}):")
            lines.extend(f"   • {esc(child['summary'])}" for child in children)
    return lines


_KIND_WORDS = {"firing": "firing", "resolved": "resolved", "reminder": "still firing", "escalated": "worse"}


def _worst(items: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    order = {"critical": 2, "warning": 1}
    active = [i for i in items if i["kind"] != "resolved"]
    return max(active, key=lambda i: order.get(i["level"], 0)) if active else items[0]


def _icon(item: Mapping[str, Any]) -> str:
    kind = item["kind"]
    if kind == "resolved":
        return RESOLVED
    if kind == "reminder":
        return REMINDER
    if kind == "escalated":
        return ESCALATED
    return ICONS.get(item["level"], "🔴")


def _item_lines(item: Mapping[str, Any], *, tz: ZoneInfo, instance: str, alone: bool) -> list[str]:
    kind, level = item["kind"], item["level"]
    began, resolved = item.get("began_at") or item.get("fired_at"), item.get("resolved_at")
    summary = esc(item["summary"])
    if kind == "resolved":
        lasted = format_age(resolved - began) if began and resolved else "?"
        head = f"{RESOLVED} <b>Resolved:</b> {summary}"
        when = f"after {lasted} ({clock(began, tz)} to {clock(resolved, tz)})"
    elif kind == "reminder":
        head = f"{REMINDER} <b>Still firing:</b> {summary}"
        when = f"{level} for {format_age((item.get('at') or 0) - (began or 0))}, since {clock(began, tz)}"
    elif kind == "escalated":
        head = f"{ESCALATED} <b>Now {esc(level)}:</b> {summary}"
        when = f"firing since {clock(began, tz)}"
    else:
        head = f"{_icon(item)} <b>{summary}</b>"
        when = f"{level} since {clock(began, tz)}"
    facts = [when, item["rule"], *(["flapping"] if item.get("flapping") else []), *([instance] if alone else [])]
    lines = [head, f"   <i>{esc(' · '.join(facts))}</i>"]
    cause = f"likely caused by: {item['cause_summary']}" if item.get("cause_summary") else None
    for note in (item.get("detail"), cause):
        if note:
            lines.append(f"   {esc(note)}")
    return lines
