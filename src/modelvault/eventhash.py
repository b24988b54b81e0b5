"""How one audit event is hashed into the chain (standard library only: the offline verifier
recomputes event hashes with it).

Two schemes, recorded per event: scheme 1 (events written before pseudonymization) hashes
the actor in clear; scheme 2 hashes ``actor_commitment = SHA-256(salt ‖ actor)`` instead, so
the clear actor and its salt can be erased later without changing any hash (docs/audit.md).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterable
from typing import Any

from .canonical import canonical_json

CLEAR, COMMITTED = 1, 2
SALT_BYTES = 16


def commit_actor(salt: str, actor: str) -> str:
    """SHA-256 of the salt's bytes (given as hex) followed by the actor's UTF-8, as hex."""
    return hashlib.sha256(bytes.fromhex(salt) + actor.encode("utf-8")).hexdigest()


def new_commitments(actor: str, count: int = 1) -> list[tuple[str, str]]:
    """(salt, commitment) for *count* new events: a fresh random salt for each, so equal
    actors give unrelated commitments (one call to the system's random source for all)."""
    pool = secrets.token_bytes(SALT_BYTES * count)
    name = actor.encode("utf-8")
    out = []
    for start in range(0, len(pool), SALT_BYTES):
        salt = pool[start : start + SALT_BYTES]
        out.append((salt.hex(), hashlib.sha256(salt + name).hexdigest()))
    return out


def new_commitment(actor: str) -> tuple[str, str]:
    """(salt, commitment) for one new event."""
    return new_commitments(actor)[0]


def event_hash(
    *,
    seq: int,
    ts: str,
    actor: str,
    action: str,
    project: str | None,
    model: str | None,
    subject: str,
    before: Any,
    after: Any,
    reason: str | None,
    prev_hash: str,
    scheme: int = CLEAR,
    actor_commitment: str | None = None,
) -> str:
    """The event's hash: over *actor* (scheme 1) or over *actor_commitment* (scheme 2, where
    *actor* is not hashed)."""
    body = {
        "seq": seq,
        "ts": ts,
        "action": action,
        "project": project,
        "model": model,
        "subject": subject,
        "before": before,
        "after": after,
        "reason": reason,
        "prev_hash": prev_hash,
    }
    if scheme == CLEAR:
        body["actor"] = actor
    elif scheme == COMMITTED:
        if not isinstance(actor_commitment, str):
            raise ValueError("an event of scheme 2 needs its actor_commitment")
        body["actor_commitment"] = actor_commitment
        body["scheme"] = COMMITTED
    else:
        raise ValueError(f"unknown event hash scheme {scheme!r}")
    return hashlib.sha256(canonical_json(body)).hexdigest()


def erased_in(afters: Iterable[Any]) -> set[int]:
    """Sequence numbers whose clear actor was erased, from the ``after`` texts of the log's
    ``audit.erase`` events (a malformed one explains nothing)."""
    erased: set[int] = set()
    for after in afters:
        try:
            runs = json.loads(after)["seqs"]
            for first, last in runs:
                erased.update(range(int(first), int(last) + 1))
        except (TypeError, ValueError, KeyError):
            continue
    return erased


def personal_problem(
    seq: int, clear_actor: Any, salt: Any, commitment: Any, erased: set[int]
) -> str | None:
    """What is wrong with the personal data of scheme-2 event *seq*, or None."""
    if clear_actor is None:
        if seq in erased:
            return None
        return f"the actor of event {seq} was removed without an audit.erase event"
    try:
        fits = commit_actor(salt, clear_actor) == commitment
    except (TypeError, ValueError):
        fits = False
    if not fits:
        return f"the clear actor of event {seq} does not match its commitment"
    return None
