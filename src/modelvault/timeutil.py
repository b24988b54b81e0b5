"""Time as modelvault stores it: UTC, microsecond precision, fixed-width ISO 8601 text.

The fixed width makes text order equal time order, so interval queries work the same on
SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from .errors import InvalidInput

Clock = Callable[[], datetime]

_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_RELATIVE = re.compile(r"^(\d+)\s*(s|m|h|d|w)$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def utc_now() -> datetime:
    return datetime.now(UTC)


def to_text(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise InvalidInput("times must carry a time zone (use UTC, e.g. 2026-03-15T10:00Z)")
    return moment.astimezone(UTC).strftime(_FORMAT)


def from_text(text: str) -> datetime:
    return datetime.fromisoformat(text)


def parse_time(text: str, *, now: datetime | None = None, field: str = "time") -> datetime:
    """Parse a user-given time: ISO 8601 (``2026-03-15T10:00Z``, a date, an offset) or a
    relative age such as ``90m``, ``2d`` meaning that long before *now*. Naive times are UTC."""
    raw = text.strip()
    rel = _RELATIVE.match(raw)
    if rel:
        base = now or utc_now()
        try:
            return base - timedelta(**{_UNITS[rel.group(2)]: int(rel.group(1))})
        except OverflowError:
            raise InvalidInput(f"{field}: {text!r} reaches too far back", field=field) from None
    candidate = raw[:-1] + "+00:00" if raw.endswith(("Z", "z")) else raw
    try:
        moment = datetime.fromisoformat(candidate)
    except ValueError:
        raise InvalidInput(
            f"{field}: cannot read {text!r} as a time (use ISO 8601 such as "
            "2026-03-15T10:00Z, or an age such as 2d)",
            field=field,
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
