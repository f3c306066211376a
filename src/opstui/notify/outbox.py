"""The persistent outbox: every notification is written here before it is sent, and marked once Telegram took it.

One row per notification unit (an alert transition, a report, a test message) with a unique idempotency key, so
the same transition can never be queued twice. Rows that become due within one group window share a `group_id`
and go out as one message. Rows stay until sent (through restarts and hours-long outages) and are delivered
oldest first; a multi-part message remembers how many parts Telegram already accepted, so a restart in the
middle resumes instead of repeating them.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opstui.state import StateStore

SENT_KEPT = 14 * 86400.0
"""Sent rows are kept this long: their idempotency keys guard against a late duplicate, and they are history."""


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: int
    idem_key: str
    kind: str
    group_id: int
    payload: Mapping[str, Any]
    created_at: float
    due_at: float
    parts_sent: int
    attempts: int


def enqueue(
    db: sqlite3.Connection,
    idem_key: str,
    kind: str,
    payload: Mapping[str, Any],
    *,
    now: float,
    group_window: float = 0.0,
    group_with: str | None = None,
) -> bool:
    """Queue one notification inside the caller's transaction; False if this key was queued before.

    With a group window, it joins the group that is still gathering (its first row came less than a window
    ago), or opens a new one that becomes due a window from now. `group_with` names the key of a row whose
    message it should join instead, if that message has not started going out (a root cause's alert).
    """
    group_id: int | None = None
    due_at = now
    joined = None
    if group_with is not None:
        joined = db.execute(
            "SELECT group_id, due_at FROM outbox o WHERE idem_key = ? AND status = 'pending' AND NOT EXISTS "
            "(SELECT 1 FROM outbox p WHERE p.group_id = o.group_id AND p.parts_sent > 0)",
            (group_with,),
        ).fetchone()
    if joined is not None:
        group_id, due_at = int(joined[0]), float(joined[1])
    elif group_window > 0:
        row = db.execute(
            "SELECT group_id, due_at FROM outbox WHERE status = 'pending' AND due_at > ? AND kind != 'report' "
            "AND kind != 'text' ORDER BY id DESC LIMIT 1",
            (now,),
        ).fetchone()
        if row is not None:
            group_id, due_at = int(row[0]), float(row[1])
        else:
            due_at = now + group_window
    cursor = db.execute(
        "INSERT OR IGNORE INTO outbox (idem_key, kind, group_id, payload, created_at, due_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (idem_key, kind, group_id, json.dumps(payload, separators=(",", ":")), now, due_at),
    )
    if cursor.rowcount == 0:
        return False
    if group_id is None:
        db.execute("UPDATE outbox SET group_id = id WHERE id = ?", (cursor.lastrowid,))
    return True


class Outbox:
    """Reading and marking the outbox; each method is its own transaction."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def add(
        self, idem_key: str, kind: str, payload: Mapping[str, Any], *, now: float, group_window: float = 0.0
    ) -> bool:
        with self.store.transaction() as db:
            return enqueue(db, idem_key, kind, payload, now=now, group_window=group_window)

    def next_group(self, now: float) -> list[OutboxItem]:
        """The oldest due group's rows, in order; empty when nothing is due."""
        head = self.store.query(
            "SELECT group_id FROM outbox WHERE status = 'pending' AND due_at <= ? ORDER BY due_at, group_id LIMIT 1",
            (now,),
        )
        if not head:
            return []
        rows = self.store.query(
            "SELECT id, idem_key, kind, group_id, payload, created_at, due_at, parts_sent, attempts FROM outbox "
            "WHERE group_id = ? AND status = 'pending' ORDER BY id",
            (head[0]["group_id"],),
        )
        return [
            OutboxItem(
                id=row["id"],
                idem_key=row["idem_key"],
                kind=row["kind"],
                group_id=row["group_id"],
                payload=json.loads(row["payload"]),
                created_at=row["created_at"],
                due_at=row["due_at"],
                parts_sent=row["parts_sent"],
                attempts=row["attempts"],
            )
            for row in rows
        ]

    def next_due_at(self) -> float | None:
        rows = self.store.query("SELECT min(due_at) FROM outbox WHERE status = 'pending'")
        return None if rows[0][0] is None else float(rows[0][0])

    # The rows a message was rendered from are marked by id: a row that joined the group while the message
    # was on its way was not in it, and stays pending.

    def part_sent(self, rows: Sequence[OutboxItem], parts_sent: int, message_id: int | None) -> None:
        self._update(rows, "parts_sent = ?, message_ids = message_ids || ?", (parts_sent, f"{message_id or ''} "))

    def sent(self, rows: Sequence[OutboxItem], now: float) -> None:
        self._update(rows, "status = 'sent', sent_at = ?, error = NULL", (now,))

    def failed(self, rows: Sequence[OutboxItem], error: str, now: float) -> None:
        """Give up on rows Telegram will never accept (our bug, e.g. a rejected message); kept for the record."""
        self._update(rows, "status = 'failed', sent_at = ?, error = ?", (now, error))

    def attempted(self, rows: Sequence[OutboxItem], error: str) -> None:
        self._update(rows, "attempts = attempts + 1, error = ?", (error,))

    def _update(self, rows: Sequence[OutboxItem], assignments: str, values: tuple[Any, ...]) -> None:
        with self.store.transaction() as db:
            db.executemany(
                f"UPDATE outbox SET {assignments} WHERE id = ? AND status = 'pending'",
                [(*values, row.id) for row in rows],
            )

    def backlog(self) -> tuple[int, float | None]:
        """How many notifications wait, and since when the oldest is due."""
        row = self.store.query("SELECT count(*), min(due_at) FROM outbox WHERE status = 'pending'")[0]
        return int(row[0]), None if row[1] is None else float(row[1])

    def prune(self, now: float) -> None:
        with self.store.transaction() as db:
            db.execute("DELETE FROM outbox WHERE status != 'pending' AND sent_at < ?", (now - SENT_KEPT,))
