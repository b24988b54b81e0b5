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
from collections.abc import Callable, Mapping
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
    return typing.cast(T, _decoder(typing.cast(Any, cls))(data))


def _same(value: Any) -> Any:
    return value


def _optional(inner: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else inner(value)


@functools.cache
def _decoder(tp: Any) -> Callable[[Any], Any]:
    """A function turning JSON into *tp*, built once per type (the remote SDK decodes every
    answer through here, so the type hints are read once, not on every call)."""
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        return _optional(_decoder(options[0]) if len(options) == 1 else _same)
    if origin is tuple:
        args = typing.get_args(tp)
        item = _decoder(args[0] if args else Any)
        return _optional(lambda value: tuple(item(v) for v in value))
    if origin is list:
        (arg,) = typing.get_args(tp) or (Any,)
        each = _decoder(arg)
        return _optional(lambda value: [each(v) for v in value])
    if origin in (Mapping, dict) or tp is Mapping:
        args = typing.get_args(tp)
        inner = _decoder(args[1] if len(args) == 2 else Any)
        if origin is dict:
            return _optional(lambda value: {k: inner(v) for k, v in value.items()})
        return _optional(lambda value: frozen_map({k: inner(v) for k, v in value.items()}))
    if tp is datetime:
        return _optional(from_text)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _optional(_dataclass_decoder(tp))
    return _same


def _dataclass_decoder(cls: type) -> Callable[[Any], Any]:
    spec: tuple[tuple[str, Callable[[Any], Any]], ...] | None = None

    def decode(value: Any) -> Any:
        nonlocal spec
        fields = spec
        if fields is None:  # built on first use: a field's type may name this very class
            hints = _hints(cls)
            fields = spec = tuple(
                (f.name, _decoder(hints[f.name])) for f in dataclasses.fields(cls)
            )
        return cls(**{name: fn(value[name]) for name, fn in fields if name in value})

    return decode


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
