"""The modelvault server: the REST API under ``/api/v1`` over the same service layer as
local mode (``create_app``), run by ``modelvault server``."""

from .app import create_app

__all__ = ["create_app"]
