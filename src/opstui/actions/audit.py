"""The audit log: every run, refusal and confirmation, in the state store, and how `opstui audit` shows it.

One row per request: a refusal is written as such; a run is written as "running" when it starts (which is
also how one run at a time is enforced across the TUI, the CLI and the daemon sharing a state store) and
completed when it ends. Everything stored is already redacted.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from opstui.actions.guard import Actor
from opstui.actions.runner import RunResult, describe_exit
from opstui.redact import redact
from opstui.state import StateStore
from opstui.units import format_age, format_duration

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

RESULTS = ("running", "ok", "failed", "timeout", "cancelled", "refused", "interrupted")
"""interrupted: the opstui that ran it stopped before the run ended (its outcome is unknown)."""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: float
    actor: str
    actor_kind: str
    actor_id: str
    action: str
    kind: str | None
    target: str | None
    args: tuple[str, ...]
    """What ran (or would have): the program and arguments, directory, environment; secrets masked."""
    confirmation: str | None
    result: str
    reason: str | None
    exit_status: int | None
    duration: float | None
    output: tuple[str, ...]
    """The last lines of output."""

    def as_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["at"] = datetime.fromtimestamp(self.at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        doc["args"] = list(self.args)
        doc["output"] = list(self.output)
        return doc


@dataclass(frozen=True, slots=True)
class Request:
    """Who asked for what: the part of an entry known before anything runs."""

    actor: Actor
    action: str
    kind: str | None = None
    target: str | None = None
    args: Sequence[str] = ()
    confirmation: str | None = None


class AuditLog:
    """Reads and writes the audit table; each method is one short transaction (call it off the event loop)."""

    def __init__(self, store: StateStore, *, keep: float = 90 * 86400.0) -> None:
        self.store = store
        self.keep = keep
        self.host = socket.gethostname()

    def refused(self, request: Request, reason: str) -> int:
        with self.store.transaction() as db:
            return self._insert(db, request, result="refused", reason=reason)

    def declined(self, request: Request, how: str) -> int:
        """The person said no at the confirmation: recorded as cancelled, with how."""
        with self.store.transaction() as db:
            return self._insert(db, request, result="cancelled", reason=how)

    def record(self, request: Request, *, result: str, reason: str | None = None) -> int:
        """One entry for a request that is not a run: the Telegram bot's commands (a silence set, a refusal)."""
        with self.store.transaction() as db:
            return self._insert(db, request, result=result, reason=reason)

    def claim(self, request: Request, *, exclusive: str, deadline: float) -> int | str:
        """Record a run as started, unless another run with the same `exclusive` key is still running.

        Returns the new entry's id, or why not (and records this request as refused for that reason). Check
        and insert happen in one write transaction, so two processes pressing the same key at once cannot
        both win.
        """
        now = time.time()
        with self.store.transaction() as db:
            db.row_factory = sqlite3.Row
            try:
                running = db.execute(
                    "SELECT * FROM audit WHERE result = 'running' AND exclusive = ? ORDER BY id", (exclusive,)
                ).fetchall()
            finally:
                db.row_factory = None
            for row in running:
                if self._still_running(row, now):
                    blocker = _entry(row)
                    what = blocker.action + (f" on {blocker.target}" if blocker.target else "")
                    reason = (
                        f"{what} is already running: started {format_age(now - blocker.at)} ago "
                        f"by {blocker.actor}; one run at a time"
                    )
                    self._insert(db, request, result="refused", reason=reason)
                    return reason
                self._interrupted(db, row["id"])
            return self._insert(
                db,
                request,
                result="running",
                exclusive=exclusive,
                host=self.host,
                pid=os.getpid(),
                deadline=deadline,
            )

    def finish(self, entry_id: int, result: RunResult, output: Sequence[str]) -> None:
        with self.store.transaction() as db:
            db.execute(
                "UPDATE audit SET result = ?, reason = ?, exit_status = ?, duration = ?, output = ?, "
                "exclusive = NULL WHERE id = ?",
                (
                    result.result,
                    printable(result.reason) if result.reason else None,
                    result.exit_status,
                    round(result.duration, 3),
                    json.dumps([printable(line) for line in output], ensure_ascii=False),
                    entry_id,
                ),
            )

    def recent(self, limit: int = 20) -> list[AuditEntry]:
        """The latest entries, oldest first (so the newest is the last line on a terminal)."""
        rows = self.store.query("SELECT * FROM audit ORDER BY id DESC LIMIT ?", (max(0, limit),))
        return [_entry(row) for row in reversed(rows)]

    def tidy(self, now: float | None = None) -> None:
        """Mark runs whose opstui died as interrupted, and drop entries older than `keep`."""
        now = time.time() if now is None else now
        with self.store.transaction() as db:
            db.row_factory = sqlite3.Row
            try:
                running = db.execute("SELECT * FROM audit WHERE result = 'running'").fetchall()
            finally:
                db.row_factory = None
            for row in running:
                if not self._still_running(row, now):
                    self._interrupted(db, row["id"])
            db.execute("DELETE FROM audit WHERE ts < ? AND result != 'running'", (now - self.keep,))

    def _still_running(self, row: sqlite3.Row, now: float) -> bool:
        # A run whose opstui died stays "running" in the table; it no longer blocks once its process is gone
        # (same host) or its deadline has passed.
        if row["deadline"] is not None and row["deadline"] < now:
            return False
        if row["host"] == self.host and row["pid"] is not None:
            try:
                os.kill(row["pid"], 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
        return True

    @staticmethod
    def _interrupted(db: sqlite3.Connection, entry_id: int) -> None:
        db.execute(
            "UPDATE audit SET result = 'interrupted', reason = ?, exclusive = NULL WHERE id = ?",
            ("the opstui that ran it stopped before the run ended; its outcome is unknown", entry_id),
        )

    def _insert(self, db: sqlite3.Connection, request: Request, *, result: str, **columns: Any) -> int:
        actor = request.actor
        values = {
            "ts": time.time(),
            "actor": printable(str(actor)),
            "actor_kind": actor.kind,
            "actor_id": printable(actor.id),
            "action": printable(request.action),
            "kind": request.kind,
            "target": printable(request.target) if request.target else None,
            "args": json.dumps([printable(arg) for arg in request.args], ensure_ascii=False),
            "confirmation": printable(request.confirmation) if request.confirmation else None,
            "result": result,
            **columns,
        }
        if values.get("reason"):
            values["reason"] = printable(values["reason"])
        names = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        cursor = db.execute(f"INSERT INTO audit ({names}) VALUES ({marks})", tuple(values.values()))
        assert cursor.lastrowid is not None
        return cursor.lastrowid


def printable(text: str) -> str:
    """Text as it may be stored and printed on a terminal: secrets masked, control characters escaped.

    Refused requests carry what someone typed (from a Telegram chat, say); a newline or a terminal escape in
    it must not forge a line or recolour the screen when `opstui audit` prints it.
    """
    return _CONTROL.sub(lambda m: repr(m.group(0))[1:-1], redact(text))


def _entry(row: sqlite3.Row) -> AuditEntry:
    return AuditEntry(
        id=row["id"],
        at=row["ts"],
        actor=row["actor"],
        actor_kind=row["actor_kind"],
        actor_id=row["actor_id"],
        action=row["action"],
        kind=row["kind"],
        target=row["target"],
        args=tuple(json.loads(row["args"])),
        confirmation=row["confirmation"],
        result=row["result"],
        reason=row["reason"],
        exit_status=row["exit_status"],
        duration=row["duration"],
        output=tuple(json.loads(row["output"])),
    )


def render_json(entries: Sequence[AuditEntry]) -> str:
    return json.dumps([entry.as_json() for entry in entries], indent=2, ensure_ascii=False)


def render_text(entries: Sequence[AuditEntry], *, timezone: str) -> str:
    """The table `opstui audit` prints: when, result, action and row, who, and what ran or why not."""
    if not entries:
        return "no actions run or refused yet"
    zone = ZoneInfo(timezone)
    header = (f"WHEN ({timezone})", "RESULT", "ACTION", "WHO", "DETAIL")
    rows = [header, *(_text_row(entry, zone) for entry in entries)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = [
        "  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[-1]]) for row in rows
    ]
    return "\n".join(line.rstrip() for line in lines)


def _text_row(entry: AuditEntry, zone: ZoneInfo) -> tuple[str, str, str, str, str]:
    when = datetime.fromtimestamp(entry.at, zone).strftime("%Y-%m-%d %H:%M:%S")
    action = entry.action + (f" [{entry.target}]" if entry.target else "")
    details: list[str] = []
    if entry.result in ("refused", "cancelled") and entry.reason:
        details.append(entry.reason)
    else:
        details.extend(entry.args[:1])
        if entry.exit_status is not None:
            details.append(describe_exit(entry.exit_status))
        if entry.duration is not None:
            details.append(format_duration(entry.duration) if entry.duration >= 1 else f"{entry.duration * 1000:.0f}ms")
        if entry.reason:
            details.append(entry.reason)
        if entry.confirmation:
            details.append(f"confirmation: {entry.confirmation}")
    return when, entry.result, action, entry.actor, " · ".join(details)
