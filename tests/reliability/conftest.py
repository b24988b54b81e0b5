"""Scale of the reliability suite: bounded inside `make test` (CI), larger with
`make reliability` (MODELVAULT_RELIABILITY_SCALE=full)."""

from __future__ import annotations

import os

FULL = os.environ.get("MODELVAULT_RELIABILITY_SCALE") == "full"


def scaled(ci: int, full: int) -> int:
    return full if FULL else ci
