"""One JSON error envelope for every error the server answers, with a stable machine code
in the body and in the ``X-Error-Code`` header.

    ModelVaultError class      HTTP
    Unauthenticated            401 (with WWW-Authenticate: Bearer)
    Forbidden                  403
    NotFound                   404
    AlreadyExists, Conflict    409
    GateFailed                 409
    PayloadTooLarge            413
    InvalidInput (and query)   400
    IntegrityError             422
    StoreError                 503
    anything else              500 ``internal`` (logged; no traceback is sent)
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import (
    AlreadyExists,
    Conflict,
    Forbidden,
    GateFailed,
    IntegrityError,
    InvalidInput,
    ModelVaultError,
    NotFound,
    PayloadTooLarge,
    StoreError,
    Unauthenticated,
)
from ..wire import ERROR_HEADER, error_envelope

log = logging.getLogger("modelvault.server")

STATUS: tuple[tuple[type[ModelVaultError], int], ...] = (
    (Unauthenticated, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (AlreadyExists, 409),
    (Conflict, 409),
    (GateFailed, 409),
    (PayloadTooLarge, 413),
    (InvalidInput, 400),
    (IntegrityError, 422),
    (StoreError, 503),
)
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}


def status_of(exc: ModelVaultError) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def envelope_response(status: int, body: dict[str, Any], code: str) -> JSONResponse:
    headers = {ERROR_HEADER: code}
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body, status_code=status, headers=headers)


def error_response(exc: ModelVaultError) -> JSONResponse:
    return envelope_response(status_of(exc), error_envelope(exc), exc.code)


def validation_response(exc: RequestValidationError) -> JSONResponse:
    """A request that does not validate: 400, naming the first field at fault."""
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    message = f"{where or 'request'}: {first.get('msg', 'is invalid')}"
    return error_response(InvalidInput(message, field=where or None))


def install(app: FastAPI) -> None:
    """Route every error through the envelope."""

    async def known(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ModelVaultError)
        return error_response(exc)

    async def invalid(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return validation_response(exc)

    async def http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        body = {"error": {"code": code, "message": str(exc.detail)}}
        return envelope_response(exc.status_code, body, code)

    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=exc)
        body = {"error": {"code": "internal", "message": "internal server error (logged)"}}
        return envelope_response(500, body, "internal")

    app.add_exception_handler(ModelVaultError, known)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http)
    app.add_exception_handler(Exception, unexpected)
