"""Canonical JSON and SHA-256 digests: the byte forms that content addresses are computed over.

Canonical JSON is UTF-8, keys sorted, no insignificant white space, no NaN/Infinity. Two
equal documents always give the same bytes, so the same digest.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from .errors import InvalidInput

DIGEST_PREFIX = "sha256:"
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")


def canonical_json(value: Any) -> bytes:
    """Serialize *value* canonically; raises InvalidInput for values JSON cannot hold."""
    try:
        text = json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except ValueError as exc:
        raise InvalidInput(f"value cannot be stored canonically: {exc}") from None
    return text.encode("utf-8")


def sha256_digest(data: bytes) -> str:
    return DIGEST_PREFIX + hashlib.sha256(data).hexdigest()


def digest_of(value: Any) -> str:
    """Digest of the canonical JSON form of *value*."""
    return sha256_digest(canonical_json(value))


def is_digest(text: str) -> bool:
    return isinstance(text, str) and _DIGEST_RE.fullmatch(text) is not None


def check_digest(text: str, *, field: str = "digest") -> str:
    if not is_digest(text):
        raise InvalidInput(
            f"{field} must look like sha256:<64 lowercase hex digits>, got {text[:80]!r}",
            field=field,
        )
    return text


def hex_of(digest: str) -> str:
    return digest[len(DIGEST_PREFIX) :]
