"""The gateway's ASGI application (Starlette):

    POST /v1/models/{model}/predict   {"inputs": [[...], ...]} -> {"outputs", "version"}
    GET  /v1/configs/{model}          the inference config of the release the request routes to
    GET  /v1/shadows/{model}          the latest disagreements of each shadow: both outputs
    POST /v1/feedback                 {"request_id", "labels" | "scores"}: delayed truth
    GET  /v1/models                   the routing table: arms, loaded and failed releases
    GET  /healthz, /readyz, /metrics  liveness, readiness (503 when the table may be stale)

Errors use the one JSON envelope ``{"error": {"code", "message", ...}}``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route as Path

from ..errors import InvalidInput, ModelVaultError
from ..service.context import Context
from .core import Gateway, Route
from .inputs import check_inputs, parse_body


def _error(status: int, code: str, message: str, **fields: Any) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, **fields}}, status_code=status)


def _route(gw: Gateway, model: str) -> Route | JSONResponse:
    route = gw.routes.get(model)
    if route is None:
        return _error(
            404,
            "not_found",
            f"{model} is not deployed in {gw.environment}",
            model=model,
            environment=gw.environment,
        )
    return route


def create_app(
    ctx: Context, environment: str, *, background: bool = True, **options: Any
) -> Starlette:
    """The gateway app for *environment*. With ``background=False`` nothing runs on its own
    (tests drive ``app.state.gateway``: ``refresh()``, ``flush()``, ``control()``)."""
    gw = Gateway(ctx, environment, **options)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        if background:
            await run_in_threadpool(gw.start)
        else:
            await run_in_threadpool(gw.refresh)
        try:
            yield
        finally:
            await run_in_threadpool(gw.stop)

    async def predict(request: Request) -> Response:
        found = _route(gw, request.path_params["model"])
        if isinstance(found, JSONResponse):
            return found
        route = found
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        try:
            body = parse_body(await request.body())
        except InvalidInput as exc:
            return _error(400, exc.code, exc.message, **exc.fields)
        choice = route.router.choose(request.headers, body, request_id)
        if choice is None:
            return _error(503, "unavailable", "no healthy release is loaded for this model")
        release = choice.release
        loaded = route.loaded[release]
        arm = (route.deployment_id, "arm", release.key)
        version = f"{release.model}:{release.version}"
        headers = {
            "X-Model-Version": version,
            "X-Request-Id": request_id,
            "X-Model-Route": choice.rule,
        }
        if loaded.model is None:
            return _error(
                400,
                "invalid_input",
                f"{version} is a config; read it at /v1/configs/{release.model}",
            )
        try:
            rows = check_inputs(body, loaded.model.n_features)
        except InvalidInput as exc:
            gw.measure.client_error(arm)
            return JSONResponse(
                {"error": {"code": exc.code, "message": exc.message, **exc.fields}},
                status_code=400,
                headers=headers,
            )
        started = time.perf_counter()
        try:
            outputs = list(await run_in_threadpool(loaded.model.predict, rows))
        except Exception as exc:  # the model failed: counted against its release
            gw.measure.served(arm, time.perf_counter() - started, error=True)
            return JSONResponse(
                {
                    "error": {
                        "code": "model_error",
                        "message": f"{version} failed: {type(exc).__name__}: {exc}"[:500],
                    }
                },
                status_code=500,
                headers=headers,
            )
        gw.measure.served(arm, time.perf_counter() - started, error=False)
        gw.served(request_id, route.deployment_id, release.key, outputs)
        shadows = [r for r in choice.shadows if r != release]  # never itself
        if shadows:
            gw.mirror(route, shadows, rows, outputs, request_id)
        payload: dict[str, Any] = {"outputs": outputs, "version": version, "request_id": request_id}
        if loaded.config_ref is not None:
            payload["config"] = loaded.config_ref
            headers["X-Model-Config"] = loaded.config_ref
        return JSONResponse(payload, headers=headers)

    async def config(request: Request) -> Response:
        found = _route(gw, request.path_params["model"])
        if isinstance(found, JSONResponse):
            return found
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        choice = found.router.choose(request.headers, dict(request.query_params), request_id)
        if choice is None:
            return _error(503, "unavailable", "no healthy release is loaded for this model")
        loaded = found.loaded[choice.release]
        if loaded.config is None:
            return _error(404, "not_found", f"{choice.release} has no inference config")
        version = f"{choice.release.model}:{choice.release.version}"
        return JSONResponse(
            {
                "config": dict(loaded.config),
                "version": version,
                "config_version": loaded.config_ref,
            },
            headers={"X-Model-Version": version, "X-Request-Id": request_id},
        )

    async def feedback(request: Request) -> Response:
        try:
            done = gw.feedback(parse_body(await request.body()))
        except ModelVaultError as exc:
            status = 404 if exc.code == "not_found" else 400
            return _error(status, exc.code, exc.message, **exc.fields)
        return JSONResponse(done)

    async def shadows(request: Request) -> Response:
        found = _route(gw, request.path_params["model"])
        if isinstance(found, JSONResponse):
            return found
        return JSONResponse(
            {
                s.release.key: list(gw.disagreements.get(s.release.key, ()))
                for s in found.deployment.spec.shadows
            }
        )

    async def models(_: Request) -> Response:
        return JSONResponse(
            {
                "environment": gw.environment,
                "ready": gw.ready,
                "models": {
                    name: {
                        "revision": r.deployment.revision,
                        "arms": {a.release.key: a.weight for a in r.deployment.spec.arms},
                        "stable": r.router.stable.key if r.router.stable else None,
                        "loaded": sorted(rel.key for rel in r.loaded),
                        "failed": {rel.key: why for rel, why in r.failed.items()},
                    }
                    for name, r in gw.routes.items()
                },
            }
        )

    async def healthz(_: Request) -> Response:
        return JSONResponse({"live": True})

    async def readyz(_: Request) -> Response:
        body = {"ready": gw.ready, "error": gw.last_error, "models": sorted(gw.routes)}
        return JSONResponse(body, status_code=200 if gw.ready else 503)

    async def metrics(_: Request) -> Response:
        text = gw.measure.prometheus(
            gw.ready, {"modelvault_gateway_table_refreshes": float(gw.refreshes)}
        )
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    async def unexpected(_: Request, exc: Exception) -> Response:
        if isinstance(exc, ModelVaultError):
            return _error(400 if isinstance(exc, InvalidInput) else 500, exc.code, exc.message)
        return _error(500, "internal", f"{type(exc).__name__}: {exc}")

    app = Starlette(
        routes=[
            Path("/v1/models/{model}/predict", predict, methods=["POST"]),
            Path("/v1/configs/{model}", config, methods=["GET"]),
            Path("/v1/models", models, methods=["GET"]),
            Path("/v1/feedback", feedback, methods=["POST"]),
            Path("/v1/shadows/{model}", shadows, methods=["GET"]),
            Path("/healthz", healthz, methods=["GET"]),
            Path("/readyz", readyz, methods=["GET"]),
            Path("/metrics", metrics, methods=["GET"]),
        ],
        lifespan=lifespan,
        exception_handlers={Exception: unexpected},
    )
    app.state.gateway = gw
    return app
