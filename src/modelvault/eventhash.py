"""How one audit event is hashed into the chain (standard library only: the offline verifier
recomputes event hashes with it)."""

from __future__ import annotations

import hashlib
from typing import Any

from .canonical import canonical_json


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
) -> str:
    body = {
        "seq": seq,
        "ts": ts,
        "actor": actor,
        "action": action,
        "project": project,
        "model": model,
        "subject": subject,
        "before": before,
        "after": after,
        "reason": reason,
        "prev_hash": prev_hash,
    }
    return hashlib.sha256(canonical_json(body)).hexdigest()
