"""The persistent outbox: every notification is written here before it is sent, and marked once Telegram took it.

One row per notification unit (an alert transition, a report, a test message) with a unique idempotency key, so
the same transition can never be queued twice. Rows that become due within one group window share a `group_id`
and go out as one message. Rows stay until sent (through restarts and hours-long outages) and are delivered
oldest first; a multi-part message remembers how many parts Telegram already accepted, so a restart in the
middle resumes instead of repeating them.

Before sending, the sender claims its rows with its fencing token (`claim`); marking them afterwards succeeds
only while the claim is still its own. With daemons sharing a leader (PostgreSQL), a claim is refused to one
whose lease was taken over, and a new leader leaves rows an old one claimed alone for `in_doubt` seconds, the
longest a send under way can take, so the old one can still mark what it sent. On a single host the token is
always 0 and a claim never waits.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opstui.state import Db, Store

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
    db: Db,
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
    inserted = db.execute(
        "INSERT INTO outbox (idem_key, kind, group_id, payload, created_at, due_at) VALUES (?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (idem_key) DO NOTHING RETURNING id",
        (idem_key, kind, group_id, json.dumps(payload, separators=(",", ":")), now, due_at),
    ).fetchone()
    if inserted is None:
        return False
    if group_id is None:
        db.execute("UPDATE outbox SET group_id = id WHERE id = ?", (inserted[0],))
    return True


class Outbox:
    """Reading and marking the outbox; each method is its own transaction."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def add(
        self, idem_key: str, kind: str, payload: Mapping[str, Any], *, now: float, group_window: float = 0.0
    ) -> bool:
        """Queue one notification (leader-only: raises `Fenced` in a daemon that does not lead)."""
        with self.store.transaction(fenced=True) as db:
            return enqueue(db, idem_key, kind, payload, now=now, group_window=group_window)

    def claim(self, rows: Sequence[OutboxItem], now: float, *, in_doubt: float) -> tuple[int, float | None]:
        """Claim rows before sending them: (the token to mark them with, None) once claimed, or (token, when to
        look again) while another leader's claim on one of them may still be sending. Raises `Fenced`."""
        with self.store.transaction(fenced=True) as db:
            token = self.store.fence_token(db)
            ids = [row.id for row in rows]
            claims = [
                db.execute("SELECT claim_token, claimed_at FROM outbox WHERE id = ?", (row_id,)).fetchone()
                for row_id in ids
            ]
            doubtful = [
                float(c[1]) + in_doubt
                for c in claims
                if c is not None and c[0] is not None and int(c[0]) < token and float(c[1]) + in_doubt > now
            ]
            if doubtful:
                return token, max(doubtful)
            db.executemany(
                "UPDATE outbox SET claim_token = ?, claimed_at = ? WHERE id = ? AND status = 'pending'",
                [(token, now, row_id) for row_id in ids],
            )
        return token, None

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
    # was on its way was not in it, and stays pending. Each returns how many of the rows were still claimed
    # with `token` (fewer: another daemon took them over, and may send them again).

    def part_sent(
        self,
        rows: Sequence[OutboxItem],
        token: int,
        parts_sent: int,
        message_id: int | None,
        *,
        sent_at: float | None = None,
    ) -> int:
        """Telegram accepted part `parts_sent`; with `sent_at` it was the last, and the rows are sent."""
        assignments = "parts_sent = ?, message_ids = message_ids || ?"
        values: tuple[Any, ...] = (parts_sent, f"{message_id or ''} ")
        if sent_at is not None:
            assignments += ", status = 'sent', sent_at = ?, error = NULL"
            values += (sent_at,)
        return self._update(rows, token, assignments, values)

    def sent(self, rows: Sequence[OutboxItem], token: int, now: float) -> int:
        return self._update(rows, token, "status = 'sent', sent_at = ?, error = NULL", (now,))

    def failed(self, rows: Sequence[OutboxItem], token: int, error: str, now: float) -> int:
        """Give up on rows Telegram will never accept (our bug, e.g. a rejected message); kept for the record."""
        return self._update(rows, token, "status = 'failed', sent_at = ?, error = ?", (now, error))

    def attempted(self, rows: Sequence[OutboxItem], token: int, error: str) -> int:
        return self._update(rows, token, "attempts = attempts + 1, error = ?", (error,))

    def _update(self, rows: Sequence[OutboxItem], token: int, assignments: str, values: tuple[Any, ...]) -> int:
        with self.store.transaction() as db:
            return sum(
                db.execute(
                    f"UPDATE outbox SET {assignments} WHERE id = ? AND status = 'pending' AND claim_token = ?",
                    (*values, row.id, token),
                ).rowcount
                for row in rows
            )

    def backlog(self) -> tuple[int, float | None]:
        """How many notifications wait, and since when the oldest is due."""
        row = self.store.query("SELECT count(*), min(due_at) FROM outbox WHERE status = 'pending'")[0]
        return int(row[0]), None if row[1] is None else float(row[1])

    def prune(self, now: float) -> None:
        with self.store.transaction() as db:
            db.execute("DELETE FROM outbox WHERE status != 'pending' AND sent_at < ?", (now - SENT_KEPT,))
