"""The audit chain: how an event is hashed, appended and verified.

Each event's hash is SHA-256 over the canonical JSON of its fields and the previous event's
hash; the head row holds the last (seq, hash). Appending happens inside the caller's unit of
work, so an event commits with the change it records or not at all.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from .canonical import canonical_json
from .domain import AuditEvent, AuditVerification, frozen_map
from .errors import StoreError
from .eventhash import event_hash
from .store import schema
from .store import statements as sql
from .store.engine import GENESIS_HASH
from .timeutil import from_text, to_text

_A = schema.audit_events


@dataclass(frozen=True, slots=True)
class EventDraft:
    """What a use-case says happened; seq, hashes and time are filled in on append."""

    action: str
    subject: str
    project: str | None = None
    model: str | None = None
    before: Mapping[str, Any] | None = None
    after: Mapping[str, Any] | None = None
    reason: str | None = None


def _json_or_none(value: Mapping[str, Any] | None) -> str | None:
    return None if value is None else canonical_json(dict(value)).decode("utf-8")


def append(conn: Connection, draft: EventDraft, *, actor: str, at: datetime) -> AuditEvent:
    """Append one event in the caller's transaction and move the head."""
    head = conn.execute(sql.LOCK_HEAD).one()
    seq = head.seq + 1
    ts = to_text(at)
    # hash exactly what verify will read back: the stored JSON text, parsed
    before_text, after_text = _json_or_none(draft.before), _json_or_none(draft.after)
    before = None if before_text is None else json.loads(before_text)
    after = None if after_text is None else json.loads(after_text)
    digest = event_hash(
        seq=seq,
        ts=ts,
        actor=actor,
        action=draft.action,
        project=draft.project,
        model=draft.model,
        subject=draft.subject,
        before=before,
        after=after,
        reason=draft.reason,
        prev_hash=head.hash,
    )
    conn.execute(
        sql.INSERT_EVENT,
        {
            "seq": seq,
            "ts": ts,
            "actor": actor,
            "action": draft.action,
            "project": draft.project,
            "model": draft.model,
            "subject": draft.subject,
            "before": before_text,
            "after": after_text,
            "reason": draft.reason,
            "prev_hash": head.hash,
            "hash": digest,
        },
    )
    moved = conn.execute(sql.MOVE_HEAD, {"old_seq": head.seq, "new_seq": seq, "new_hash": digest})
    if moved.rowcount != 1:
        raise StoreError("the audit head moved under this transaction; try again")
    return AuditEvent(
        seq=seq,
        ts=from_text(ts),
        actor=actor,
        action=draft.action,
        project=draft.project,
        model=draft.model,
        subject=draft.subject,
        before=frozen_map(before) if before is not None else None,
        after=frozen_map(after) if after is not None else None,
        reason=draft.reason,
        prev_hash=head.hash,
        hash=digest,
    )


def append_batch(
    conn: Connection, drafts: list[EventDraft], *, actor: str, at: datetime
) -> tuple[int, str]:
    """Append many events in the caller's transaction with one insert and one head move
    (imports and bulk operations); returns the new head (seq, hash)."""
    head = conn.execute(sql.LOCK_HEAD).one()
    seq, prev, ts = head.seq, head.hash, to_text(at)
    rows = []
    for draft in drafts:
        seq += 1
        before_text, after_text = _json_or_none(draft.before), _json_or_none(draft.after)
        digest = event_hash(
            seq=seq,
            ts=ts,
            actor=actor,
            action=draft.action,
            project=draft.project,
            model=draft.model,
            subject=draft.subject,
            before=None if before_text is None else json.loads(before_text),
            after=None if after_text is None else json.loads(after_text),
            reason=draft.reason,
            prev_hash=prev,
        )
        rows.append(
            {
                "seq": seq,
                "ts": ts,
                "actor": actor,
                "action": draft.action,
                "project": draft.project,
                "model": draft.model,
                "subject": draft.subject,
                "before": before_text,
                "after": after_text,
                "reason": draft.reason,
                "prev_hash": prev,
                "hash": digest,
            }
        )
        prev = digest
    if rows:
        conn.execute(sql.INSERT_EVENT, rows)
        moved = conn.execute(sql.MOVE_HEAD, {"old_seq": head.seq, "new_seq": seq, "new_hash": prev})
        if moved.rowcount != 1:
            raise StoreError("the audit head moved under this transaction; try again")
    return seq, prev


def row_to_event(row: Any) -> AuditEvent:
    before = json.loads(row.before) if row.before is not None else None
    after = json.loads(row.after) if row.after is not None else None
    return AuditEvent(
        seq=row.seq,
        ts=from_text(row.ts),
        actor=row.actor,
        action=row.action,
        project=row.project,
        model=row.model,
        subject=row.subject,
        before=frozen_map(before) if isinstance(before, dict) else before,
        after=frozen_map(after) if isinstance(after, dict) else after,
        reason=row.reason,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def _rows(conn: Connection, batch: int = 5000) -> Iterator[Any]:
    last = 0
    while True:
        rows = conn.execute(select(_A).where(_A.c.seq > last).order_by(_A.c.seq).limit(batch)).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


def verify(conn: Connection) -> AuditVerification:
    """Recompute the chain from the first event; stop at the first event that does not fit."""
    head = conn.execute(select(schema.audit_head.c.seq, schema.audit_head.c.hash)).one()
    expected_seq, prev = 1, GENESIS_HASH
    count = 0

    def bad(seq: int, problem: str) -> AuditVerification:
        return AuditVerification(
            ok=False,
            events=count,
            head_seq=head.seq,
            head_hash=head.hash,
            first_bad_seq=seq,
            problem=problem,
        )

    for row in _rows(conn):
        if row.seq != expected_seq:
            if row.seq > expected_seq:
                return bad(expected_seq, f"event {expected_seq} is missing (next is {row.seq})")
            return bad(row.seq, f"event {row.seq} is out of order")
        if row.prev_hash != prev:
            return bad(row.seq, f"event {row.seq} does not link to event {row.seq - 1}")
        try:
            before = json.loads(row.before) if row.before is not None else None
            after = json.loads(row.after) if row.after is not None else None
        except ValueError:
            return bad(row.seq, f"event {row.seq} holds unreadable JSON")
        recomputed = event_hash(
            seq=row.seq,
            ts=row.ts,
            actor=row.actor,
            action=row.action,
            project=row.project,
            model=row.model,
            subject=row.subject,
            before=before,
            after=after,
            reason=row.reason,
            prev_hash=row.prev_hash,
        )
        if recomputed != row.hash:
            return bad(row.seq, f"event {row.seq} was altered (its hash does not match)")
        prev = row.hash
        expected_seq += 1
        count += 1
    if count != head.seq or prev != head.hash:
        missing = count + 1 if count < head.seq else head.seq + 1
        return bad(
            missing,
            f"the chain ends at event {count} but its head says {head.seq}: "
            "events were removed or added at the end",
        )
    return AuditVerification(ok=True, events=count, head_seq=head.seq, head_hash=head.hash)
