"""Webhook use-cases: add, list, remove, replay, dead letters, and the delivery bookkeeping
(claim a webhook, read its next events, record a success, a failure or a dead letter).

A webhook's outbox is the audit log: its cursor is the last sequence number delivered or
dead-lettered, so delivery is at least once and in order, and a restart resumes from the
cursor. Configuration changes are audited; cursor moves by the delivery worker are not — they
are the outbox's bookkeeping, not a change of the registry (auditing them would feed the
outbox its own deliveries).
"""

from __future__ import annotations

import fnmatch
import json
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, delete, insert, or_, select, update

from ..audit import EventDraft, append, events_select, row_to_event
from ..domain import AuditEvent
from ..errors import AlreadyExists, InvalidInput, NotFound
from ..events.records import DeadLetter, Webhook
from ..limits import check_name
from ..store import schema
from ..timeutil import from_text, to_text
from .context import Context, ensure_project

W, D, E, P = schema.webhooks, schema.webhook_dead_letters, schema.audit_events, schema.projects
BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 300.0


def _check_url(url: str) -> str:
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInput(f"webhook URL {str(url)[:200]!r} must be an http(s) URL", field="url")
    if len(url) > 2048:
        raise InvalidInput("webhook URL is longer than 2048 characters", field="url")
    return url


def _check_actions(actions: Sequence[str]) -> list[str]:
    out = []
    for pattern in actions or ["*"]:
        if not isinstance(pattern, str) or not pattern or len(pattern) > 64 or "\x00" in pattern:
            raise InvalidInput(f"event pattern {pattern!r} must be 1-64 characters", field="events")
        out.append(pattern)
    return out


def _webhook(row: Any, project: str) -> Webhook:
    return Webhook(
        project=project,
        name=row.name,
        url=row.url,
        actions=tuple(json.loads(row.actions)),
        cursor=row.cursor,
        attempts=row.attempts,
        max_attempts=row.max_attempts,
        timeout_ms=row.timeout_ms,
        created_by=row.created_by,
        created_at=from_text(row.created_at),
        next_attempt_at=from_text(row.next_attempt_at) if row.next_attempt_at else None,
        last_error=row.last_error,
    )


def _row(conn: Connection, project: str, name: str) -> Any:
    row = conn.execute(
        select(W)
        .select_from(W.join(P, W.c.project_id == P.c.id))
        .where(P.c.name == project, W.c.name == check_name(name, what="webhook name"))
    ).first()
    if row is None:
        raise NotFound(f"webhook {name} does not exist in project {project}", webhook=name)
    return row


def add_webhook(
    ctx: Context,
    project: str,
    name: str,
    url: str,
    *,
    actions: Sequence[str] = (),
    secret: str | None = None,
    max_attempts: int = 8,
    timeout_ms: int = 10_000,
    from_seq: int | None = None,
) -> tuple[Webhook, str]:
    """Create a webhook; returns it and its signing secret (shown once). It delivers events
    after *from_seq* (default: from now on)."""
    check_name(name, what="webhook name")
    _check_url(url)
    patterns = _check_actions(actions)
    if not 1 <= max_attempts <= 50:
        raise InvalidInput("max_attempts must be from 1 to 50", field="max_attempts")
    if not 100 <= timeout_ms <= 120_000:
        raise InvalidInput("timeout_ms must be from 100 to 120000", field="timeout_ms")
    secret = secret or secrets.token_urlsafe(32)
    if not 16 <= len(secret) <= 128:
        raise InvalidInput("a webhook secret must be 16-128 characters", field="secret")
    with ctx.store.write() as conn:
        at = ctx.now()
        project_id = ensure_project(conn, ctx, project, at)
        taken = conn.execute(
            select(W.c.id).where(W.c.project_id == project_id, W.c.name == name)
        ).first()
        if taken is not None:
            raise AlreadyExists(f"webhook {name} exists in project {project}", webhook=name)
        head = int(conn.execute(select(schema.audit_head.c.seq)).scalar_one())
        cursor = head if from_seq is None else max(0, from_seq - 1)
        append(
            conn,
            EventDraft(
                "webhook.add",
                f"{project}/webhook:{name}",
                project=project,
                after={"name": name, "url": url, "events": patterns, "from_seq": cursor + 1},
            ),
            actor=ctx.actor,
            at=at,
        )
        conn.execute(
            insert(W).values(
                project_id=project_id,
                name=name,
                url=url,
                secret=secret,
                actions=json.dumps(patterns),
                max_attempts=max_attempts,
                timeout_ms=timeout_ms,
                cursor=cursor,
                created_by=ctx.actor,
                created_at=to_text(at),
            )
        )
        return _webhook(_row(conn, project, name), project), secret


def list_webhooks(ctx: Context, project: str) -> list[Webhook]:
    with ctx.store.read() as conn:
        rows = conn.execute(
            select(W)
            .select_from(W.join(P, W.c.project_id == P.c.id))
            .where(P.c.name == project)
            .order_by(W.c.name)
        ).all()
    return [_webhook(r, project) for r in rows]


def remove_webhook(ctx: Context, project: str, name: str) -> None:
    with ctx.store.write() as conn:
        at = ctx.now()
        row = _row(conn, project, name)
        append(
            conn,
            EventDraft(
                "webhook.remove",
                f"{project}/webhook:{name}",
                project=project,
                before={"name": name, "url": row.url, "cursor": row.cursor},
            ),
            actor=ctx.actor,
            at=at,
        )
        conn.execute(delete(D).where(D.c.webhook_id == row.id))
        conn.execute(delete(W).where(W.c.id == row.id))


def replay(ctx: Context, project: str, name: str, from_seq: int) -> Webhook:
    """Deliver again every matching event from *from_seq* on (at least once means a
    receiver must accept repeats; the delivery id says which event it is)."""
    if isinstance(from_seq, bool) or not isinstance(from_seq, int) or from_seq < 1:
        raise InvalidInput("replay starts at a sequence number >= 1", field="from_seq")
    with ctx.store.write() as conn:
        at = ctx.now()
        row = _row(conn, project, name)
        append(
            conn,
            EventDraft(
                "webhook.replay",
                f"{project}/webhook:{name}",
                project=project,
                before={"cursor": row.cursor},
                after={"cursor": from_seq - 1},
            ),
            actor=ctx.actor,
            at=at,
        )
        conn.execute(
            update(W)
            .where(W.c.id == row.id)
            .values(cursor=from_seq - 1, attempts=0, next_attempt_at=None, last_error=None)
        )
        return _webhook(_row(conn, project, name), project)


def dead_letters(ctx: Context, project: str, name: str) -> list[DeadLetter]:
    with ctx.store.read() as conn:
        row = _row(conn, project, name)
        rows = conn.execute(select(D).where(D.c.webhook_id == row.id).order_by(D.c.seq)).all()
    return [
        DeadLetter(
            webhook=name,
            seq=r.seq,
            attempts=r.attempts,
            last_error=r.last_error,
            dead_at=from_text(r.dead_at),
        )
        for r in rows
    ]


# -- the delivery worker's bookkeeping --------------------------------------------------------


def matches(webhook_actions: Sequence[str], action: str) -> bool:
    return any(fnmatch.fnmatchcase(action, p) for p in webhook_actions)


def claim(ctx: Context, owner: str, lease: timedelta, now: datetime) -> list[tuple[int, str]]:
    """Lease every webhook that is due and not leased by another worker; returns (id,
    project) pairs. Of several workers (server replicas) exactly one delivers a webhook."""
    now_text = to_text(now)
    claimed = []
    with ctx.store.write() as conn:
        due = conn.execute(
            select(W.c.id, P.c.name)
            .select_from(W.join(P, W.c.project_id == P.c.id))
            .where(
                or_(W.c.lease_until.is_(None), W.c.lease_until < now_text),
                or_(W.c.next_attempt_at.is_(None), W.c.next_attempt_at <= now_text),
            )
        ).all()
        for webhook_id, project in due:
            done = conn.execute(
                update(W)
                .where(
                    W.c.id == webhook_id,
                    or_(W.c.lease_until.is_(None), W.c.lease_until < now_text),
                )
                .values(lease_until=to_text(now + lease), lease_owner=owner)
            )
            if done.rowcount == 1:
                claimed.append((int(webhook_id), str(project)))
    return claimed


def pending(ctx: Context, webhook_id: int, limit: int = 100) -> tuple[Any, list[AuditEvent], int]:
    """The webhook's row, its next events (of its project, matching its patterns), and the
    last sequence number looked at (the cursor may move there when nothing matched)."""
    with ctx.store.read() as conn:
        row = conn.execute(
            select(W, P.c.name.label("project"))
            .join(P, W.c.project_id == P.c.id)
            .where(W.c.id == webhook_id)
        ).one()
        patterns = json.loads(row.actions)
        events: list[AuditEvent] = []
        scanned = row.cursor
        while len(events) < limit:
            batch = conn.execute(
                events_select()
                .where(E.c.seq > scanned, E.c.project == row.project)
                .order_by(E.c.seq)
                .limit(limit * 4)
            ).all()
            if not batch:
                break
            for r in batch:
                if matches(patterns, r.action):
                    events.append(row_to_event(r))
                    if len(events) == limit:
                        break
                scanned = r.seq
        if events and len(events) == limit:
            scanned = events[-1].seq
        return row, events, scanned


def due(ctx: Context, now: datetime) -> bool:
    """Whether any webhook may have something to deliver: a cheap read, so idle workers do
    not take the writers' lock."""
    now_text = to_text(now)
    with ctx.store.read(snapshot=False) as conn:
        head = conn.execute(select(schema.audit_head.c.seq)).scalar() or 0
        found = conn.execute(
            select(W.c.id)
            .where(
                W.c.cursor < head,
                or_(W.c.lease_until.is_(None), W.c.lease_until < now_text),
                or_(W.c.next_attempt_at.is_(None), W.c.next_attempt_at <= now_text),
            )
            .limit(1)
        ).first()
    return found is not None


def skip_to(ctx: Context, webhook_id: int, cursor: int) -> None:
    """Move the cursor past events that do not match (nothing to deliver up to *cursor*)."""
    with ctx.store.write() as conn:
        conn.execute(
            update(W).where(W.c.id == webhook_id, W.c.cursor < cursor).values(cursor=cursor)
        )


def delivered(ctx: Context, webhook_id: int, seq: int) -> None:
    with ctx.store.write() as conn:
        conn.execute(
            update(W)
            .where(W.c.id == webhook_id)
            .values(cursor=seq, attempts=0, next_attempt_at=None, last_error=None)
        )


def failed(ctx: Context, webhook_id: int, seq: int, error: str, now: datetime) -> bool:
    """Record a failed attempt at *seq*; after the last allowed attempt the event goes to the
    dead letters and the cursor moves on. Returns True when it was dead-lettered."""
    with ctx.store.write() as conn:
        row = conn.execute(select(W).where(W.c.id == webhook_id)).one()
        attempts = row.attempts + 1
        if attempts >= row.max_attempts:
            conn.execute(
                insert(D).values(
                    webhook_id=webhook_id,
                    seq=seq,
                    attempts=attempts,
                    last_error=error[:2000],
                    dead_at=to_text(now),
                )
            )
            conn.execute(
                update(W)
                .where(W.c.id == webhook_id)
                .values(cursor=seq, attempts=0, next_attempt_at=None, last_error=error[:2000])
            )
            return True
        delay = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** (attempts - 1))
        conn.execute(
            update(W)
            .where(W.c.id == webhook_id)
            .values(
                attempts=attempts,
                next_attempt_at=to_text(now + timedelta(seconds=delay)),
                last_error=error[:2000],
            )
        )
        return False


def release(ctx: Context, webhook_id: int, owner: str) -> None:
    with ctx.store.write() as conn:
        conn.execute(
            update(W)
            .where(W.c.id == webhook_id, W.c.lease_owner == owner)
            .values(lease_until=None, lease_owner=None)
        )
