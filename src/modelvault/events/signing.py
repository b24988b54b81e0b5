"""Signing webhook deliveries: ``X-Modelvault-Signature: t=UNIX,v1=HEX`` where HEX is
HMAC-SHA256(secret, "UNIX." + body). The time inside the signature lets a receiver refuse
replays of old deliveries; receivers can use ``verify`` from here (stdlib only)."""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "X-Modelvault-Signature"


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(secret: str, header: str, body: bytes, *, tolerance_s: int = 300) -> bool:
    """Whether *header* signs *body* with *secret*, made within *tolerance_s* of now."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        t = int(fields["t"])
        given = fields["v1"]
    except (KeyError, ValueError):
        return False
    if abs(time.time() - t) > tolerance_s:
        return False
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given)
