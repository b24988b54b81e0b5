"""The ASGI application: routers, the error envelope, the body-size limit and health checks.

``create_app`` opens one registry over the configured stores and migrates the schema (safe
with several replicas starting at once: one migrates, the others wait for it).
"""

from __future__ import annotations

import threading
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._version import __version__
from ..errors import PayloadTooLarge
from ..registry import Registry
from ..service.inlineblobs import inline_limit
from ..settings import Settings
from ..timeutil import Clock
from ..wire import error_envelope
from . import (
    envelope,
    routes_audit,
    routes_blobs,
    routes_deploy,
    routes_evaluations,
    routes_events,
    routes_registry,
    routes_retention,
    routes_runs,
    transfers,
)
from .lanes import Lanes
from .routing import Api

MAX_JSON_BYTES = 16 << 20  # documented in docs/server.md
_STREAMED = ("/api/v1/blobs/", "/api/v1/uploads/")


class BodyLimit:
    """Refuse a JSON body over ``MAX_JSON_BYTES`` with 413 (blob streams are exempt)."""

    def __init__(self, app: ASGIApp, limit: int = MAX_JSON_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or (path.startswith(_STREAMED) and scope.get("method") == "PUT"):
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await self._refuse(scope, receive, send)
                return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise PayloadTooLarge(self._message())
            return message

        await self.app(scope, counted, send)

    def _message(self) -> str:
        return f"request body is over the limit of {self.limit} bytes"

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        exc = PayloadTooLarge(self._message())
        response = envelope.envelope_response(413, error_envelope(exc), exc.code)
        await response(scope, receive, send)


def create_app(
    settings: Settings | None = None,
    *,
    migrate: bool = True,
    clock: Clock | None = None,
    registry: Registry | None = None,
) -> FastAPI:
    """The server for *settings* (from the environment by default), or over *registry*
    (which the server then owns: it closes it when it stops)."""
    if registry is None:
        registry = Registry(settings=settings or Settings.from_env(), clock=clock)
    # a wrong MODELVAULT_INLINE_BLOB_MAX stops the start, rather than every registration
    inline_limit(registry.settings.inline_blob_max)
    if migrate:
        registry.upgrade_schema()
    app = Api(
        title="modelvault",
        version=__version__,
        description="Model registry, lifecycle and audit: the REST API of `modelvault server`.",
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
    )
    app.state.registry = registry
    envelope.install(app)
    app.mount_routes(
        routes_registry.router,
        routes_blobs.router,
        routes_audit.router,
        routes_events.router,
        routes_runs.router,
        routes_deploy.router,
        routes_evaluations.router,
        routes_retention.router,
    )

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], response_model=None)
    def readyz() -> Any:
        """The metadata store answers and its schema is this release's."""
        status = registry.schema_status()
        if status.state != "current":
            body = {"status": "not ready", "schema": status.state}
            return JSONResponse(body, status_code=503)
        return {"status": "ready", "schema": status.revision}

    app.add_middleware(Lanes)  # (inside the body-size limit: added first)
    app.add_middleware(BodyLimit)
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def started() -> None:  # webhooks go out from the outbox while the server runs
        transfers.sweep(registry.settings.home, registry._ctx.blobs)  # interrupted uploads
        staged = routes_blobs.sweep_in_background(registry._ctx.blobs, stop)
        if staged is not None:
            threads.append(staged)
        threads.append(routes_events.deliver_in_background(registry, stop))

    def stopped() -> None:
        stop.set()
        for thread in threads:
            thread.join(timeout=15)
        registry.close()

    app.router.on_startup.append(started)
    app.router.on_shutdown.append(stopped)
    return app
