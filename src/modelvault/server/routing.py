"""Routes whose documentation costs nothing until someone reads it.

The endpoints answer with ready-made JSON responses; the models named in their
``responses={code: {"model": M}}`` serve the OpenAPI document only. FastAPI turns each into
a pydantic TypeAdapter when the route is declared, which at ~250 of them was a large part of
the server's start (docs/server.md: ready within 1 s). ``DocumentedRoute`` keeps the models
aside and builds their schemas when ``/openapi.json`` is first asked for; ``Api`` takes the
routers' routes as they are (``include_router`` would build every route's state a second
time, on the first request).

A route declared with ``openapi_extra=json_body(M)`` reads its body itself, with
``read_json(request, M)``: pydantic validates the bytes as they came, where FastAPI would
first decode them with ``json.loads`` and then validate the objects (for a registration
carrying a 64 KiB file inline, 0.13 against 0.24 ms: ≈ 4 % of the server's CPU for it). The
document shows the same JSON body as for a ``body: M`` parameter, and a body that does not
validate gets the same answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.utils import create_model_field
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)
_JSON_BODY = "x-modelvault-json-body"  # (taken out of openapi_extra before FastAPI sees it)


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads a *model* JSON body with ``read_json``."""
    return {_JSON_BODY: model}


async def read_json(request: Request, model: type[M]) -> M:
    """The request's body as *model*, validated straight from its bytes; one that does not
    validate raises what FastAPI raises for a ``body: model`` parameter."""
    if not _is_json(request.headers.get("content-type", "")):
        raise RequestValidationError(
            [{"type": "content_type", "loc": ("body",), "msg": "must be sent as application/json"}]
        )
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None


def _is_json(content_type: str) -> bool:
    """``application/json`` or ``application/*+json``: what FastAPI decodes as JSON."""
    kind, _, sub = content_type.split(";", 1)[0].strip().lower().partition("/")
    return kind == "application" and (sub == "json" or sub.endswith("+json"))


def _documented_body(model: type[BaseModel]) -> Any:
    """The body field FastAPI makes for a ``body: model`` parameter (for the document)."""

    def documented(body: Any) -> None:  # a stand-in endpoint, never called
        return None

    documented.__annotations__["body"] = model
    return APIRoute("/", documented, methods=["POST"]).body_field


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
        extra = dict(kwargs.pop("openapi_extra", None) or {})
        self.json_body: type[BaseModel] | None = extra.pop(_JSON_BODY, None)
        kwargs["openapi_extra"] = extra or None
        stripped: dict[int | str, dict[str, Any]] = {}
        for code, response in (responses or {}).items():
            kept = dict(response)
            if "model" in kept:
                self.doc_models[code] = kept.pop("model")
            stripped[code] = kept
        super().__init__(path, endpoint, responses=stripped, **kwargs)

    def document(self) -> None:
        """Give the route its response models back, as FastAPI would have at declaration, and
        the body it reads itself (its request handler, made already, never sees it)."""
        if self.json_body is not None:
            self.body_field = _documented_body(self.json_body)
            self.json_body = None
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
