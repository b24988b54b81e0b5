"""Blob bodies to the server over a plain ``http.client`` connection.

httpx (h11) joins every piece of a body into a new bytes object before sending it; here the
caller's buffer goes to the socket as it is, so the client's work per byte is one read, one
hash and one send. Used for ``http://`` servers reached directly, like ``download``.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from ..errors import StoreError
from ..wire import API_PREFIX, error_from_envelope


def usable(url: str) -> bool:
    return urlsplit(url).scheme == "http"


def put(
    url: str,
    path: str,
    headers: dict[str, str],
    body: Iterable[memoryview | bytes],
    length: int,
    timeout: float,
) -> Any:
    """PUT the *length* bytes *body* yields to ``API_PREFIX + path``; the decoded answer (an
    error answer raises the exception the server's envelope names)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "localhost", parts.port, timeout=timeout)
    try:
        try:
            conn.putrequest("PUT", parts.path.rstrip("/") + API_PREFIX + path)
            for name, value in headers.items():
                conn.putheader(name, value)
            conn.putheader("Content-Type", "application/octet-stream")
            conn.putheader("Content-Length", str(length))
            conn.endheaders()
        except (OSError, http.client.HTTPException) as exc:
            raise StoreError(f"cannot reach the server at {url}: {exc}") from None
        try:
            for block in body:
                conn.send(block)
        except OSError as exc:
            # the server may have answered (and closed) before taking the whole body: its
            # answer says why; without one, the transfer failed
            try:
                response = conn.getresponse()
                status, data = response.status, response.read()
            except (OSError, http.client.HTTPException):
                raise StoreError(f"transfer to {url} failed: {exc}") from None
        else:
            try:
                response = conn.getresponse()
                status, data = response.status, response.read()
            except (OSError, http.client.HTTPException) as exc:
                raise StoreError(f"transfer to {url} failed: {exc}") from None
    finally:
        conn.close()
    try:
        decoded = json.loads(data) if data else None
    except ValueError:
        decoded = None
    if status >= 400:
        raise error_from_envelope(decoded, status)
    if decoded is None:
        raise StoreError(f"the server at {url} answered {status} with a body that is not JSON")
    return decoded
