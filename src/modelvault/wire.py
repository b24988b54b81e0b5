"""The wire shapes shared by the server and the remote SDK.

``as_json`` (domain.py) turns a domain record into JSON; ``from_json`` turns that JSON back
into the same frozen dataclass, guided by its type hints, so a remote registry returns exactly
the types a local one does. ``error_envelope`` and ``error_from_envelope`` carry a
``ModelVaultError`` across the wire as one JSON object with a stable ``code``.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypeVar

from .domain import frozen_map
from .errors import ERROR_CLASSES, ModelVaultError, StoreError
from .timeutil import from_text

T = TypeVar("T")

API_PREFIX = "/api/v1"
ERROR_HEADER = "X-Error-Code"


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_json(cls: type[T], data: Any) -> T:
    """The instance of dataclass *cls* that ``as_json`` turned into *data*."""
    return typing.cast(T, _decode(cls, data))


def _decode(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        return _decode(options[0], value) if len(options) == 1 else value
    if origin is tuple:
        args = typing.get_args(tp)
        item = args[0] if args else Any
        return tuple(_decode(item, v) for v in value)
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        return [_decode(item, v) for v in value]
    if origin in (Mapping, dict) or tp is Mapping:
        args = typing.get_args(tp)
        inner = args[1] if len(args) == 2 else Any
        decoded = {k: _decode(inner, v) for k, v in value.items()}
        return decoded if origin is dict else frozen_map(decoded)
    if tp is datetime:
        return from_text(value)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        hints = _hints(tp)
        return tp(
            **{
                f.name: _decode(hints[f.name], value[f.name])
                for f in dataclasses.fields(tp)
                if f.name in value
            }
        )
    return value


_BY_CODE: dict[str, type[ModelVaultError]] = {c.code: c for c in ERROR_CLASSES}


def register_error(cls: type[ModelVaultError]) -> None:
    """Make *cls* travel across the wire by its code (for classes outside errors.py)."""
    _BY_CODE[cls.code] = cls


def error_envelope(exc: ModelVaultError) -> dict[str, Any]:
    """The one JSON error shape: ``{"error": {"code", "message", ...fields}}``."""
    return {"error": exc.to_dict()}


def error_from_envelope(body: Any, status: int) -> ModelVaultError:
    """The exception a server's error envelope describes (StoreError when it is not one)."""
    err = body.get("error") if isinstance(body, Mapping) else None
    if not isinstance(err, Mapping) or not isinstance(err.get("message"), str):
        return StoreError(f"the server answered {status} without an error envelope")
    code = str(err.get("code", ""))
    cls = _BY_CODE.get(code, StoreError)
    fields = {k: v for k, v in err.items() if k not in ("code", "message")}
    exc = cls.__new__(cls)
    ModelVaultError.__init__(exc, err["message"], **fields)
    return exc
