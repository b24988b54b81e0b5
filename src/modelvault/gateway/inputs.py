"""The prediction request's schema: ``{"inputs": [[number, ...], ...]}``. A wrong shape is
the caller's error (HTTP 400 naming the field), never counted against the model."""

from __future__ import annotations

import json
from typing import Any

from ..errors import InvalidInput

MAX_ROWS = 10_000
MAX_BODY = 16 * 1024 * 1024


def parse_body(raw: bytes) -> Any:
    if len(raw) > MAX_BODY:
        raise InvalidInput(f"the request body is larger than {MAX_BODY} bytes", field="body")
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("the request body is not valid JSON", field="body") from None


def check_inputs(body: Any, n_features: int | None) -> list[list[Any]]:
    if not isinstance(body, dict):
        raise InvalidInput("the request body must be a JSON object", field="body")
    if "inputs" not in body:
        raise InvalidInput('missing field "inputs" (rows of features)', field="inputs")
    rows = body["inputs"]
    if not isinstance(rows, list) or not rows:
        raise InvalidInput('"inputs" must be a non-empty list of rows', field="inputs")
    if len(rows) > MAX_ROWS:
        raise InvalidInput(f'"inputs" holds more than {MAX_ROWS} rows', field="inputs")
    width = n_features
    for i, row in enumerate(rows):
        if not isinstance(row, list):
            raise InvalidInput(f"inputs[{i}] must be a list of numbers", field=f"inputs[{i}]")
        if width is None:
            width = len(row)
        if len(row) != width:
            expected = "the model expects" if n_features is not None else "row 0 has"
            raise InvalidInput(
                f"inputs[{i}] has {len(row)} features; {expected} {width}",
                field=f"inputs[{i}]",
            )
        for j, value in enumerate(row):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidInput(
                    f"inputs[{i}][{j}] must be a number, not {json.dumps(value)[:40]}",
                    field=f"inputs[{i}][{j}]",
                )
    return rows
