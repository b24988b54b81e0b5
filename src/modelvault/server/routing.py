"""Routes whose documentation costs nothing until someone reads it.

The endpoints answer with ready-made JSON responses; the models named in their
``responses={code: {"model": M}}`` serve the OpenAPI document only. FastAPI turns each into
a pydantic TypeAdapter when the route is declared, which at ~250 of them was a large part of
the server's start (docs/server.md: ready within 1 s). ``DocumentedRoute`` keeps the models
aside and builds their schemas when ``/openapi.json`` is first asked for; ``Api`` takes the
routers' routes as they are (``include_router`` would build every route's state a second
time, on the first request).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from fastapi.utils import create_model_field


class DocumentedRoute(APIRoute):
    def __init__(
        self,
        path: str,
        endpoint: Callable[..., Any],
        *,
        responses: dict[int | str, dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        self.doc_models: dict[int | str, Any] = {}
        stripped: dict[int | str, dict[str, Any]] = {}
        for code, response in (responses or {}).items():
            kept = dict(response)
            if "model" in kept:
                self.doc_models[code] = kept.pop("model")
            stripped[code] = kept
        super().__init__(path, endpoint, responses=stripped, **kwargs)

    def document(self) -> None:
        """Give the route its response models back, as FastAPI would have at declaration."""
        for code, model in self.doc_models.items():
            self.responses[code] = {**self.responses[code], "model": model}
            self.response_fields[code] = create_model_field(
                name=f"Response_{code}_{self.unique_id}", type_=model, mode="serialization"
            )
        self.doc_models = {}


def documented_router(prefix: str) -> APIRouter:
    """An APIRouter of ``DocumentedRoute``s under *prefix* (the full path: see ``Api``)."""
    return APIRouter(prefix=prefix, route_class=DocumentedRoute)


class Api(FastAPI):
    def mount_routes(self, *routers: APIRouter) -> None:
        """Serve the routes of *routers*, whose prefixes are the full paths. The route
        objects are the routers' own (every app of the process shares them), so the app's
        ``dependency_overrides`` do not reach them; nothing here uses overrides."""
        for r in routers:
            assert not r.on_startup and not r.on_shutdown and not r.dependencies
            self.router.routes.extend(r.routes)

    def openapi(self) -> dict[str, Any]:
        if not self.openapi_schema:
            for route in self.routes:
                if isinstance(route, DocumentedRoute):
                    route.document()
        return super().openapi()
