"""Blob bodies from the server over a plain ``http.client`` connection.

httpx hands a body over in 64 KiB network reads, each copied into the verifying writer;
here each read of the verifying writer fills its 4 MiB buffer straight from the socket
(``HTTPResponse.readinto``), so the client's work per byte is one hash and one write.
Used for ``http://`` servers; anything else (TLS settings, proxies) keeps going through
the registry's httpx client.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from ..errors import StoreError
from ..wire import API_PREFIX, error_from_envelope


def usable(url: str) -> bool:
    return urlsplit(url).scheme == "http"


@contextmanager
def get(
    url: str, path: str, headers: dict[str, str], timeout: float
) -> Iterator[http.client.HTTPResponse]:
    """GET ``API_PREFIX + path`` on the server at *url*; the response, once it is a 2xx
    (an error answer raises the exception the server's envelope names)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(
        parts.hostname or "localhost",
        parts.port,
        timeout=timeout,
    )
    try:
        try:
            conn.request("GET", parts.path.rstrip("/") + API_PREFIX + path, headers=headers)
            response = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            raise StoreError(f"cannot reach the server at {url}: {exc}") from None
        if response.status >= 400:
            raise error_from_envelope(_body(response), response.status)
        yield response
    finally:
        conn.close()


def _body(response: http.client.HTTPResponse) -> Any:
    try:
        return json.loads(response.read())
    except (ValueError, OSError, http.client.HTTPException):
        return None
