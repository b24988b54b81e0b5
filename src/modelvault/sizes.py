"""Sizes written in settings: ``67108864``, ``64KiB``, ``64MiB``, ``1GiB``."""

from __future__ import annotations

import re

from .errors import InvalidInput

_SIZE = re.compile(r"(\d+)\s*(b|k|kib|m|mib|g|gib)?", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20}
_UNITS |= {"g": 1 << 30, "gib": 1 << 30}


def parse_size(text: str, env: str) -> int:
    """The bytes *text* names, or InvalidInput naming the setting *env*."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise InvalidInput(
            f"{env} must be a size like 67108864, 64MiB or 1GiB, got {text!r}", field=env
        )
    return int(match[1]) * _UNITS[(match[2] or "").lower()]
