"""The audit chain: how an event is hashed, appended and verified.

Each event's hash is SHA-256 over the canonical JSON of its fields and the previous event's
hash; the head row holds the last (seq, hash). Appending happens inside the caller's unit of
work, so an event commits with the change it records or not at all. New events hash a
commitment to their actor; the clear actor and its salt are stored apart (``audit_personal``)
so that erasing them leaves every hash intact.
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
from .eventhash import (
    COMMITTED,
    erased_in,
    event_hash,
    new_commitment,
    new_commitments,
    personal_problem,
)
from .store import lean, schema
from .store import statements as sql
from .store.engine import AUDIT_SEQ, GENESIS_HASH, LOCKED_HEAD
from .timeutil import from_text, to_text

_A, _AP = schema.audit_events, schema.audit_personal
ERASED = "erased:"


def events_select() -> Any:
    """SELECT of events with the clear actor of each (None once erased)."""
    return select(_A, _AP.c.actor.label("clear_actor")).select_from(
        _A.outerjoin(_AP, _AP.c.seq == _A.c.seq)
    )


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


# In new events' payloads, a value equal to the actor's name is stored as this mark, so that
# the name is nowhere in the hashed fields; reads put the (clear or erased) actor back.
ACTOR_MARK = "\u27e8actor\u27e9"


def _marked(value: Any, actor: str) -> Any:
    if isinstance(value, str):
        return ACTOR_MARK if value == actor else value
    if isinstance(value, Mapping):
        return {k: _marked(v, actor) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_marked(v, actor) for v in value]
    return value


def _unmarked(value: Any, actor: str) -> Any:
    if isinstance(value, str):
        return actor if value == ACTOR_MARK else value
    if isinstance(value, dict):
        return {k: _unmarked(v, actor) for k, v in value.items()}
    if isinstance(value, list):
        return [_unmarked(v, actor) for v in value]
    return value


def _json_or_none(value: Mapping[str, Any] | None, actor: str, needle: str) -> str | None:
    """The payload's stored JSON, the actor marked; *needle* is the actor as a JSON string."""
    if value is None:
        return None
    text = canonical_json(dict(value)).decode("utf-8")
    # a value equal to the actor is serialized as *needle*: walk only when one may be there
    if needle in text:
        text = canonical_json(_marked(value, actor)).decode("utf-8")
    return text


def _locked_head(conn: Connection) -> Any:
    """The audit head (seq, hash), locked for this transaction: as a PostgreSQL writer's lock
    read it when the transaction began, if no event has moved it since, else read now."""
    head = conn.info.pop(LOCKED_HEAD, None)
    return head if head is not None else lean.run(conn, sql.LOCK_HEAD).one()


def append(conn: Connection, draft: EventDraft, *, actor: str, at: datetime) -> AuditEvent:
    """Append one event in the caller's transaction and move the head."""
    head = _locked_head(conn)
    seq = head.seq + 1
    ts = to_text(at)
    # hash exactly what verify will read back: the stored JSON text, parsed
    needle = canonical_json(actor).decode("utf-8")
    before_text = _json_or_none(draft.before, actor, needle)
    after_text = _json_or_none(draft.after, actor, needle)
    before = None if before_text is None else json.loads(before_text)
    after = None if after_text is None else json.loads(after_text)
    salt, commitment = new_commitment(actor)
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
        scheme=COMMITTED,
        actor_commitment=commitment,
    )
    lean.run(
        conn,
        sql.INSERT_EVENT,
        {
            "seq": seq,
            "ts": ts,
            "actor": "",
            "action": draft.action,
            "project": draft.project,
            "model": draft.model,
            "subject": draft.subject,
            "before": before_text,
            "after": after_text,
            "reason": draft.reason,
            "prev_hash": head.hash,
            "hash": digest,
            "scheme": COMMITTED,
            "actor_commitment": commitment,
        },
    )
    lean.run(conn, sql.INSERT_PERSONAL, {"seq": seq, "actor": actor, "salt": salt})
    moved = lean.run(conn, sql.MOVE_HEAD, {"old_seq": head.seq, "new_seq": seq, "new_hash": digest})
    if moved.rowcount != 1:
        raise StoreError("the audit head moved under this transaction; try again")
    conn.info[AUDIT_SEQ] = seq
    return AuditEvent(
        seq=seq,
        ts=from_text(ts),
        actor=actor,
        action=draft.action,
        project=draft.project,
        model=draft.model,
        subject=draft.subject,
        before=frozen_map(_unmarked(before, actor)) if before is not None else None,
        after=frozen_map(_unmarked(after, actor)) if after is not None else None,
        reason=draft.reason,
        prev_hash=head.hash,
        hash=digest,
        actor_commitment=commitment,
    )


def append_batch(
    conn: Connection, drafts: list[EventDraft], *, actor: str, at: datetime
) -> tuple[int, str]:
    """Append many events in the caller's transaction with one insert and one head move
    (imports and bulk operations); returns the new head (seq, hash)."""
    head = _locked_head(conn)
    seq, prev, ts = head.seq, head.hash, to_text(at)
    rows, personal = [], []
    commitments = new_commitments(actor, len(drafts))
    needle = canonical_json(actor).decode("utf-8")
    for draft, (salt, commitment) in zip(drafts, commitments, strict=True):
        seq += 1
        before_text = _json_or_none(draft.before, actor, needle)
        after_text = _json_or_none(draft.after, actor, needle)
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
            scheme=COMMITTED,
            actor_commitment=commitment,
        )
        rows.append(
            {
                "seq": seq,
                "ts": ts,
                "actor": "",
                "action": draft.action,
                "project": draft.project,
                "model": draft.model,
                "subject": draft.subject,
                "before": before_text,
                "after": after_text,
                "reason": draft.reason,
                "prev_hash": prev,
                "hash": digest,
                "scheme": COMMITTED,
                "actor_commitment": commitment,
            }
        )
        personal.append({"seq": seq, "actor": actor, "salt": salt})
        prev = digest
    if rows:
        conn.execute(sql.INSERT_EVENT, rows)
        conn.execute(sql.INSERT_PERSONAL, personal)
        moved = conn.execute(sql.MOVE_HEAD, {"old_seq": head.seq, "new_seq": seq, "new_hash": prev})
        if moved.rowcount != 1:
            raise StoreError("the audit head moved under this transaction; try again")
        conn.info[AUDIT_SEQ] = seq
    return seq, prev


def shown_actor(row: Any) -> str:
    """The actor as queries show it: in clear, or ``erased:`` and the commitment's start."""
    if row.scheme != COMMITTED:
        return str(row.actor)
    if row.clear_actor is not None:
        return str(row.clear_actor)
    return f"{ERASED}{(row.actor_commitment or '')[:16]}"


def row_to_event(row: Any, *, as_hashed: bool = False) -> AuditEvent:
    """An event from a row of ``events_select()``; *as_hashed* leaves the actor marks in its
    payload (what the hash covers) instead of showing the actor there."""
    before = json.loads(row.before) if row.before is not None else None
    after = json.loads(row.after) if row.after is not None else None
    committed = row.scheme == COMMITTED
    actor = shown_actor(row)
    if committed and not as_hashed:
        if before is not None and ACTOR_MARK in row.before:
            before = _unmarked(before, actor)
        if after is not None and ACTOR_MARK in row.after:
            after = _unmarked(after, actor)
    return AuditEvent(
        seq=row.seq,
        ts=from_text(row.ts),
        actor=actor,
        action=row.action,
        project=row.project,
        model=row.model,
        subject=row.subject,
        before=frozen_map(before) if isinstance(before, dict) else before,
        after=frozen_map(after) if isinstance(after, dict) else after,
        reason=row.reason,
        prev_hash=row.prev_hash,
        hash=row.hash,
        actor_commitment=row.actor_commitment if committed else None,
    )


def _rows(conn: Connection, after: int = 0, batch: int = 5000) -> Iterator[Any]:
    last = after
    query = select(_A, _AP.c.actor.label("clear_actor"), _AP.c.salt).select_from(
        _A.outerjoin(_AP, _AP.c.seq == _A.c.seq)
    )
    while True:
        rows = conn.execute(query.where(_A.c.seq > last).order_by(_A.c.seq).limit(batch)).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


def _recompute(row: Any, before: Any, after: Any) -> str:
    return event_hash(
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
        scheme=row.scheme,
        actor_commitment=row.actor_commitment,
    )


def verify(
    conn: Connection,
    personal: list[tuple[int, str]] | None = None,
    *,
    resume: tuple[int, str] | None = None,
) -> AuditVerification:
    """Recompute the chain from the first event; stop at the first event that does not fit.

    With *personal*, also check each clear actor against its event's commitment, and that
    each one missing was erased by an ``audit.erase`` event; the first problem is appended
    to *personal* (the chain's verdict is not affected: callers report it after the tree's).
    With *resume* = (n, hash of event n), events 1..n are taken as already verified (by
    ``auditscan``) and the walk goes on from event n + 1, exactly as it would have."""
    head = conn.execute(select(schema.audit_head.c.seq, schema.audit_head.c.hash)).one()
    erased = erased_seqs(conn) if personal is not None else set()
    count, prev = resume if resume is not None else (0, GENESIS_HASH)
    expected_seq = count + 1

    def bad(seq: int, problem: str) -> AuditVerification:
        return AuditVerification(
            ok=False,
            events=count,
            head_seq=head.seq,
            head_hash=head.hash,
            first_bad_seq=seq,
            problem=problem,
        )

    for row in _rows(conn, count):
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
        try:
            recomputed = _recompute(row, before, after)
        except ValueError:
            return bad(row.seq, f"event {row.seq} names an unknown hash scheme {row.scheme!r}")
        if recomputed != row.hash or (row.scheme == COMMITTED and row.actor != ""):
            # (a scheme-2 event keeps its actor only as a commitment: the field stays empty)
            return bad(row.seq, f"event {row.seq} was altered (its hash does not match)")
        if personal is not None and not personal and row.scheme == COMMITTED:
            problem = personal_problem(
                row.seq, row.clear_actor, row.salt, row.actor_commitment, erased
            )
            if problem is not None:
                personal.append((row.seq, problem))
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


# -- personal data ----------------------------------------------------------------------------

ERASE_ACTION = "audit.erase"


def seq_ranges(seqs: list[int]) -> list[list[int]]:
    """Sorted sequence numbers as inclusive [first, last] runs: what an erase event lists."""
    out: list[list[int]] = []
    for seq in sorted(seqs):
        if out and out[-1][1] == seq - 1:
            out[-1][1] = seq
        else:
            out.append([seq, seq])
    return out


def erased_seqs(conn: Connection) -> set[int]:
    """Sequence numbers whose clear actor an ``audit.erase`` event says was erased."""
    rows = conn.execute(select(_A.c.after).where(_A.c.action == ERASE_ACTION))
    return erased_in(after for (after,) in rows)
