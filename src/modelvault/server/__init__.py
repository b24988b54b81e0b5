"""The modelvault server: the REST API under ``/api/v1`` over the same service layer as
local mode (``create_app``), run by ``modelvault server``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    # loaded on first use: ``modelvault server`` imports ``server.main`` first, which sets
    # up how the rest is loaded (see ``main.serve``)
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
