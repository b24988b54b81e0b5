"""The HTTP side of the remote SDK: one ``httpx.Client`` per registry, server errors turned
back into the same exception classes a local registry raises."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx

from ..errors import StoreError
from ..wire import API_PREFIX, error_from_envelope


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

    def close(self) -> None:
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

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    @contextmanager
    def stream(self, path: str) -> Iterator[httpx.Response]:
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
