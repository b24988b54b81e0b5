"""The HTTP side of the remote SDK: server errors turned back into the same exception classes
a local registry raises.

Small JSON calls, the bulk of what the SDK sends, go over one kept-alive ``http.client``
connection per thread (:class:`_Lean`): a ``get`` is a few hundred bytes each way, and httpx's
URL and header machinery cost more than the server's work for it. Bodies that stream (blob
uploads and downloads), and every call when a proxy applies to the server's address, go
through one ``httpx.Client``.
"""

from __future__ import annotations

import http.client
import json as jsonlib
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

from ..errors import StoreError
from ..wire import API_PREFIX, error_from_envelope

# a connection idle for longer is not reused: the server may be closing it (uvicorn: 5 s)
_IDLE_S = 2.0
_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)
_SAFE = frozenset({"GET", "HEAD"})  # sent again when a reused connection gave no answer


class _Lean:
    """JSON requests over a kept-alive connection of this thread."""

    def __init__(self, url: str, headers: Mapping[str, str], timeout: float) -> None:
        parts = urlsplit(url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (443 if self.https else 80)
        self.base = parts.path.rstrip("/")
        self.headers = {"Accept": "application/json", **headers}
        self.timeout = timeout
        self.local = threading.local()
        self.lock = threading.Lock()
        self.open: set[http.client.HTTPConnection] = set()  # every thread's, closed by close()

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        conn: http.client.HTTPConnection | None = getattr(self.local, "conn", None)
        if conn is not None and time.monotonic() - self.local.used < _IDLE_S:
            return conn, True
        if conn is not None:
            self.drop()
        kind = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        conn = kind(self.host, self.port, timeout=self.timeout)
        self.local.conn = conn
        with self.lock:
            self.open.add(conn)
        return conn, False

    def drop(self) -> None:
        """Close this thread's connection."""
        conn = getattr(self.local, "conn", None)
        if conn is not None:
            conn.close()
            self.local.conn = None
            with self.lock:
                self.open.discard(conn)

    def close(self) -> None:
        """Close every thread's connection."""
        with self.lock:
            conns, self.open = self.open, set()
        for conn in conns:
            conn.close()
        self.local = threading.local()

    def send(
        self, method: str, path: str, query: Mapping[str, Any], body: Any, encoded: bytes | None
    ) -> tuple[int, bytes]:
        target = self.base + API_PREFIX + path
        if query:
            target += "?" + urlencode(query, doseq=True)
        headers = dict(self.headers)
        payload = encoded
        if body is not None:
            payload = jsonlib.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        if payload is not None:
            headers["Content-Type"] = "application/json"
        elif method in ("POST", "PUT", "PATCH"):
            headers["Content-Length"] = "0"
        for attempt in (1, 2):
            conn, reused = self._connection()
            retry = reused and attempt == 1
            try:
                conn.request(method, target, body=payload, headers=headers)
            except _STALE:
                # the server had closed this kept-alive connection: nothing went out, so the
                # request goes once more on a new connection
                self.drop()
                if retry:
                    continue
                raise
            except BaseException:
                self.drop()
                raise
            try:
                response = conn.getresponse()
                data = response.read()
            except _STALE:
                # sent, but no answer: most likely a connection the server closed while idle,
                # but it may have acted on the request, so only a read is sent again
                self.drop()
                if retry and method in _SAFE:
                    continue
                raise
            except BaseException:
                self.drop()
                raise
            if response.will_close:
                self.drop()
            else:
                self.local.used = time.monotonic()
            return response.status, data
        raise AssertionError("unreachable")


class Transport:
    """Requests against one server, authenticated by one bearer token."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        timeout: float = 60.0,
        client: httpx.Client | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = client or httpx.Client(
            base_url=self.url, timeout=httpx.Timeout(timeout, connect=10.0)
        )
        self.client.headers.update(headers)
        # an httpx client handed in (tests route it in process) or a proxy: httpx does it all
        direct = client is None and not _proxied(self.url)
        self.lean = _Lean(self.url, headers, timeout) if direct else None
        # called with (method, path under /api/v1) before every request: progress, tests
        self.on_request: list[Callable[[str, str], None]] = []

    def _sent(self, method: str, path: str) -> None:
        for hook in self.on_request:
            hook(method, path)

    def close(self) -> None:
        if self.lean is not None:
            self.lean.close()
        self.client.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        content: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        self._sent(method, path)
        try:
            response = self.client.request(
                method,
                API_PREFIX + path,
                json=json,
                params=query,
                content=content,
                headers=headers,
            )
        except httpx.HTTPError as exc:
            raise StoreError(f"cannot reach the server at {self.url}: {exc}") from None
        check(response)
        return response

    def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        encoded: bytes | None = None,
        **kwargs: Any,
    ) -> Any:
        """Send a JSON request (*json*, or a document already *encoded*, or a body given as
        ``content``) and decode the JSON answer."""
        if self.lean is None or kwargs:
            if encoded is not None:
                kwargs.update(content=encoded, headers={"Content-Type": "application/json"})
            return self.request(method, path, json=json, params=params, **kwargs).json()
        query = {k: v for k, v in (params or {}).items() if v is not None}
        self._sent(method, path)
        try:
            status, data = self.lean.send(method, path, query, json, encoded)
        except (OSError, http.client.HTTPException) as exc:
            raise StoreError(f"cannot reach the server at {self.url}: {exc}") from None
        try:
            decoded = jsonlib.loads(data) if data else None
        except ValueError:
            decoded = None
            if status < 400:
                raise StoreError(
                    f"the server at {self.url} answered {status} with a body that is not JSON"
                ) from None
        if status >= 400:
            raise error_from_envelope(decoded, status)
        return decoded

    @contextmanager
    def stream(self, path: str) -> Iterator[httpx.Response]:
        self._sent("GET", path)
        try:
            with self.client.stream("GET", API_PREFIX + path) as response:
                if response.status_code >= 400:
                    response.read()
                    check(response)
                yield response
        except httpx.HTTPError as exc:
            raise StoreError(f"transfer from {self.url} failed: {exc}") from None


def check(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        body = response.json()
    except ValueError:
        body = None
    raise error_from_envelope(body, response.status_code)


def _proxied(url: str) -> bool:
    """Whether the environment routes requests to *url* through a proxy."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    if parts.scheme not in proxies and "all" not in proxies:
        return False
    return not urllib.request.proxy_bypass(parts.hostname or "")
