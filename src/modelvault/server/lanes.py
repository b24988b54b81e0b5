"""The registration route, answered without FastAPI's request machinery.

A request through FastAPI passes its exception and exit-stack middlewares, the router's
search of ≈ 250 routes, the route's dependency resolution and its handler's wrapping: ≈ 0.2 to
0.3 ms of CPU per request on this project's 2-vCPU VMs, next to a registration's 2.5 ms.
Registrations are the one route clients call by the thousand in a row, so ``Lanes`` (a
middleware inside the body-size limit) takes ``POST .../projects/{project}/models/{model}/
versions`` itself: it authenticates the caller as the route's dependency does, runs the
route's own function, and answers its errors with the same envelopes as the app's handlers.
Everything else, and every request under a ``root_path``, goes on to FastAPI, which keeps
the route for its OpenAPI document (and serves it, should a request ever reach it).
"""

from __future__ import annotations

import re

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import ModelVaultError
from . import envelope, routes_registry
from .auth import caller

_REGISTER = re.compile(r"/api/v1/projects/([^/]+)/models/([^/]+)/versions")


class Lanes:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            found = _REGISTER.fullmatch(scope["path"])
            if found is not None:
                response = await _register(Request(scope, receive), *found.groups())
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _register(request: Request, project: str, model: str) -> Response:
    try:
        who = await caller(request)
        return await routes_registry.register(project, model, request, who)
    except ModelVaultError as exc:
        return envelope.error_response(exc)
    except RequestValidationError as exc:
        return envelope.validation_response(exc)
