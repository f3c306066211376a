"""What the bot's read-only commands say: the snapshot as short Telegram HTML lines for a phone.

Every line is self-contained HTML (a tag opened on a line is closed on it) with every dynamic string escaped,
so `notify.render.split_lines` can cut a long answer between any two lines. Colours come from the alert rules
(`alerts.rules.findings`), as on the TUI's panes, so the bot, the screen and `opstui check` agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from opstui.actions import Action
from opstui.alerts.rules import findings
from opstui.check import assess
from opstui.config.alerts import AlertsConfig
from opstui.model import Level, LogTail, Snapshot
from opstui.notify.render import ICONS, esc
from opstui.redact import redact
from opstui.units import format_age, format_bytes

LIST_LIMIT = 15
"""Rows listed per section in /status before the rest is summed up."""
LOG_LINES = 20
LOG_LINE_CHARS = 300
STALE = "⏸"


def icon(level: Level) -> str:
    return ICONS[level.label]


def _level(snapshot: Snapshot, config: AlertsConfig, **section: Any) -> tuple[Level, list[str]]:
    """The level the alert rules give these items right now, and what they find wrong."""
    found = findings(Snapshot(taken_at=snapshot.taken_at, instance="", sources={}, **section), config)
    return max((o.level for o in found), default=Level.OK), [o.summary for o in found]


def _stale(snapshot: Snapshot, item: Any) -> str:
    if not snapshot.is_stale(item):
        return ""
    status = snapshot.source_of(item)
    age = status.age(snapshot.taken_at) if status is not None else None
    return f" {STALE} <i>as read {esc(format_age(age))} ago</i>"


def _clock(t: float, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(t, UTC).astimezone(tz).strftime("%H:%M %Z")


def _more(total: int) -> list[str]:
    """The line that says how many rows a capped list left out, if any."""
    return [f"<i>… and {total - LIST_LIMIT} more</i>"] if total > LIST_LIMIT else []


def status_lines(snapshot: Snapshot, *, config: AlertsConfig, leader: str, tz: ZoneInfo) -> list[str]:
    """/status: the overall verdict, who leads, then processes, queues, locks, dispatch, alerts and sources."""
    level, _ = assess(snapshot)
    lines = [
        f"{icon(level)} <b>{esc(snapshot.instance)}</b> · {esc(level.label)} · {esc(_clock(snapshot.taken_at, tz))}",
        f"👑 {esc(leader)}",
    ]
    if snapshot.processes:
        judged = [(p, *_level(snapshot, config, processes=(p,))) for p in snapshot.processes]
        judged.sort(key=lambda item: -item[1])
        shown = []
        for process, process_level, _ in judged[:LIST_LIMIT]:
            restarts = ""
            if process.restarts_total is not None:
                restarts = f" · {process.restarts_total} restarts"
                if process.restarts_last_hour:
                    restarts += f" ({process.restarts_last_hour} last hour)"
            memory = f" · {format_bytes(process.rss_bytes)}" if process.rss_bytes is not None else ""
            shown.append(
                f"{icon(process_level)} {esc(process.name)} {esc(process.status)}{esc(restarts)}{esc(memory)}"
                + _stale(snapshot, process)
            )
        lines += ["", f"<b>Processes</b> ({len(snapshot.processes)})", *shown, *_more(len(judged))]
    if snapshot.queues:
        lines += ["", "<b>Queues</b>", *_queue_rows(snapshot, config)[:LIST_LIMIT], *_more(len(snapshot.queues))]
    if snapshot.locks:
        lines += ["", "<b>Locks</b>"]
        for lock in snapshot.locks[:LIST_LIMIT]:
            lock_level, _ = _level(snapshot, config, locks=(lock,))
            holder = f"held by {lock.holder}" if lock.holder else lock.state.value
            state = f" ({lock.state.value})" if lock.holder and lock.state.value != "held" else ""
            expires = ""
            if lock.expires_at is not None:
                left = lock.expires_at - snapshot.taken_at
                expires = f", expires in {format_age(left)}" if left >= 0 else f", expired {format_age(-left)} ago"
            lines.append(
                f"{icon(lock_level)} {esc(lock.name)}: {esc(holder + state + expires)}" + _stale(snapshot, lock)
            )
        lines += _more(len(snapshot.locks))
    if snapshot.dispatch:
        lines += ["", "<b>Dispatch</b> (latest run)"]
        for run in snapshot.dispatch[:LIST_LIMIT]:
            run_level, _ = _level(snapshot, config, dispatch=(run,))
            counts = f"processed {run.processed} · sent {run.sent} · failed {run.failed}"
            lines.append(f"{icon(run_level)} {esc(run.name)}: {esc(counts)}" + _stale(snapshot, run))
        lines += _more(len(snapshot.dispatch))
    firing = [a for a in snapshot.alerts if a.state in ("firing", "silenced")]
    lines += ["", f"<b>Alerts firing</b> ({len(firing)})" if firing else "✅ No alerts firing"]
    for alert in firing[:LIST_LIMIT]:
        muted = " 🔕" if alert.state == "silenced" else ""
        since = f" · {format_age(snapshot.taken_at - alert.since)}" if alert.since else ""
        lines.append(f"{icon(alert.level)} {esc(alert.summary)}{esc(since)}{muted}")
    lines += _more(len(firing))
    lines += _failing_sources(snapshot)
    return lines


def _failing_sources(snapshot: Snapshot) -> list[str]:
    failing = [s for s in snapshot.sources.values() if not s.ok]
    if not failing:
        return []
    lines = ["", f"<b>Sources failing</b> ({len(failing)} of {len(snapshot.sources)})"]
    for status in failing:
        age = status.age(snapshot.taken_at)
        good = f"last good {format_age(age)} ago" if age is not None else "never read"
        lines.append(
            f"{icon(Level.CRITICAL)} {esc(status.name)}: {esc(status.error or 'failing')} <i>({esc(good)})</i>"
        )
    return lines


def _queue_rows(snapshot: Snapshot, config: AlertsConfig) -> list[str]:
    rows = []
    for queue in snapshot.queues:
        queue_level, _ = _level(snapshot, config, queues=(queue,))
        depth = "?" if queue.depth is None else str(queue.depth)
        growth = f" · {queue.growth_per_min:+.1f}/min" if queue.growth_per_min else ""
        paused = " · paused" if queue.paused else ""
        error = f" · {queue.error}" if queue.error else ""
        rows.append(
            f"{icon(queue_level)} {esc(queue.name)}: <b>{esc(depth)}</b>{esc(growth + paused + error)}"
            + _stale(snapshot, queue)
        )
    return rows


def queue_lines(snapshot: Snapshot, *, config: AlertsConfig, name: str | None) -> list[str]:
    """/queue: every queue's depth; /queue NAME: one queue's parts, thresholds and trend."""
    if not snapshot.queues:
        return ["No queues are watched: add [[redis.queues]] or [[postgres.queues]] to the config."]
    if name is None:
        return [f"📥 <b>Queues</b> ({len(snapshot.queues)})", *_queue_rows(snapshot, config)]
    queue = _find(snapshot.queues, name)
    if queue is None:
        return [f"No queue named {esc(name)}; watched: {esc(', '.join(q.name for q in snapshot.queues))}"]
    queue_level, problems = _level(snapshot, config, queues=(queue,))
    depth = "unknown" if queue.depth is None else str(queue.depth)
    lines = [f"{icon(queue_level)} <b>{esc(queue.name)}</b> ({esc(queue.kind)}): {esc(depth)} waiting"]
    lines += [f"• {esc(part)}: {count}" for part, count in queue.parts.items()]
    if queue.growth_per_min is not None:
        lines.append(f"• trend: {queue.growth_per_min:+.1f} a minute")
    limits = [f"{label} at {value}" for label, value in (("warning", queue.warn), ("critical", queue.crit)) if value]
    if limits:
        lines.append(f"• {esc(', '.join(limits))}")
    if queue.paused:
        lines.append("• paused")
    lines += [f"⚠️ {esc(problem)}" for problem in problems]
    if queue.error:
        lines.append(f"⚠️ {esc(queue.error)}")
    lines.append(f"<i>key {esc(queue.key)}</i>" + _stale(snapshot, queue))
    return lines


def health_lines(snapshot: Snapshot, *, config: AlertsConfig) -> list[str]:
    """/health: each endpoint down to its failing components, the failing sources, and the checks that are not ok."""
    lines = ["🩺 <b>Health</b>"]
    for health in snapshot.health:
        health_level, _ = _level(snapshot, config, health=(health,))
        answer = f"HTTP {health.status_code}" if health.status_code is not None else "no answer"
        latency = f" · {health.latency_ms:.0f} ms" if health.latency_ms is not None else ""
        lines.append(f"{icon(health_level)} {esc(health.name)}: {esc(answer + latency)}" + _stale(snapshot, health))
        if health.error:
            lines.append(f"   {esc(health.error)}")
        lines += [f"   • {esc(c.name)}: {esc(c.detail or 'failing')}" for c in health.failing_components]
    if not snapshot.health:
        lines.append("<i>No health endpoints are watched ([[health]] in the config).</i>")
    ok_sources = sum(1 for s in snapshot.sources.values() if s.ok)
    failing = _failing_sources(snapshot)
    lines += failing or ["", f"{icon(Level.OK)} all {ok_sources} sources read fine"]
    bad_checks = [c for c in snapshot.checks if c.level is not Level.OK]
    if bad_checks:
        lines += ["", "<b>Checks</b>"]
        lines += [f"{icon(c.level)} {esc(c.name)}: {esc(c.detail or c.level.label)}" for c in bad_checks]
    return lines


def logs_lines(snapshot: Snapshot, name: str | None) -> list[str]:
    """/logs: which error logs there are (or the only one); /logs NAME: its last error lines."""
    tails = snapshot.logs
    if not tails:
        return ["No error logs are followed: add [[logs]] to the config (PM2 processes bring theirs)."]
    if name is None and len(tails) > 1:
        lines = ["📜 <b>Error logs</b>: /logs NAME shows one"]
        for tail in tails:
            last = f": <code>{esc(_cut(redact(tail.lines[-1]), 80))}</code>" if tail.lines else ": nothing yet"
            lines.append(f"• {esc(tail.name)} ({len(tail.lines)} lines){last}")
        return lines
    tail = tails[0] if name is None else _find(tails, name)
    if tail is None:
        return [f"No error log named {esc(name)}; followed: {esc(', '.join(t.name for t in tails))}"]
    return _tail_lines(tail)


def _tail_lines(tail: LogTail) -> list[str]:
    lines = [f"📜 <b>{esc(tail.name)}</b> <i>{esc(tail.path)}</i>"]
    if not tail.lines:
        return [*lines, "<i>no error lines yet</i>"]
    # One <code> per line keeps every line self-contained, so a long answer splits anywhere. The source
    # redacted its lines already; once more is cheap, and these leave the host.
    return lines + [f"<code>{esc(_cut(redact(line), LOG_LINE_CHARS))}</code>" for line in tail.lines[-LOG_LINES:]]


def actions_lines(actions: Sequence[Action], *, read_only: bool) -> list[str]:
    """/recover with no name: each action, how to call it, and what it asks for."""
    lines = ["🛠 <b>Actions</b>: /recover NAME [ROW] [MODE] [VALUE]"]
    if read_only:
        lines.append("⛔ read-only mode is on: every action is refused")
    if not actions:
        return [*lines, "<i>No actions are defined ([[actions.command]], [[actions.script]] in the config).</i>"]
    for action in actions:
        usage = [action.name]
        if action.scope != "global":
            usage.append(action.scope.upper())
        for parameter in action.parameters():
            usage.append("|".join(parameter.choices) if parameter.choices else parameter.name.upper())
        danger = " ⚠️ dangerous" if action.dangerous else ""
        lines.append(f"• <code>/recover {esc(' '.join(usage))}</code>{danger}")
        if action.description:
            lines.append(f"   {esc(action.description)}")
    return lines


def _find(items: Sequence[Any], name: str) -> Any:
    wanted = name.casefold()
    return next((i for i in items if i.name.casefold() == wanted), None) or next(
        (i for i in items if i.key.casefold() == wanted), None
    )


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
