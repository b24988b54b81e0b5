"""The remote SDK's lean JSON transport: kept-alive connections, a connection the server
closed while idle, proxies, and answers that are not what they should be."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from modelvault.errors import InvalidInput, NotFound, StoreError
from modelvault.remote import http as remote_http
from modelvault.remote.http import Transport


@contextmanager
def one_request_per_connection(
    status: int = 200, body: bytes = b'{"ok": true}', read_second: bool = False
) -> Iterator[tuple[str, list[str]]]:
    """A server that answers one request per connection and then hangs up without saying
    so (no ``Connection: close``), as a server does with a connection it finds idle; with
    *read_second*, it reads the connection's second request before hanging up unanswered."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[str] = []
    stop = threading.Event()

    listener.settimeout(0.1)

    def read_request(conn: socket.socket) -> str | None:
        """One whole request (headers and body); its request line, or None at the end."""
        data = b""
        while b"\r\n\r\n" not in data:
            part = conn.recv(65536)
            if not part:
                return None
            data += part
        head, _, body = data.partition(b"\r\n\r\n")
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                while len(body) < int(value):
                    body += conn.recv(65536)
        return head.split(b"\r\n", 1)[0].decode()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)  # not the listener's short accept timeout
                line = read_request(conn)
                if line is None:
                    continue
                seen.append(line)
                head = f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                conn.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
                if read_second and (line := read_request(conn)) is not None:
                    seen.append(line)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", seen
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_a_connection_the_server_closed_is_replaced_and_the_call_sent_again() -> None:
    with one_request_per_connection() as (url, seen):
        transport = Transport(url, "mvt_x")
        try:
            assert transport.lean is not None
            for _ in range(3):
                assert transport.call("GET", "/healthz-ish", params={"a": 1, "b": None}) == {
                    "ok": True
                }
        finally:
            transport.close()
    assert seen == ["GET /api/v1/healthz-ish?a=1 HTTP/1.1"] * 3


def test_a_write_that_got_no_answer_is_not_sent_again() -> None:
    """The server may have acted on it: an error, not a second registration or promotion."""
    with one_request_per_connection(read_second=True) as (url, seen):
        transport = Transport(url, None)
        try:
            assert transport.call("POST", "/x", json={"n": 1}) == {"ok": True}
            with pytest.raises(StoreError, match="cannot reach the server"):
                transport.call("POST", "/x", json={"n": 2})
            assert transport.call("POST", "/x", json={"n": 3}) == {"ok": True}  # reconnects
        finally:
            transport.close()
    assert seen == ["POST /api/v1/x HTTP/1.1"] * 3  # the second arrived once, unanswered


def test_a_connection_idle_too_long_is_not_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(remote_http, "_IDLE_S", 0.0)
    opened: list[object] = []
    with one_request_per_connection() as (url, seen):
        transport = Transport(url, None)
        assert transport.lean is not None
        real = transport.lean._connection

        def spy() -> tuple[object, bool]:
            conn, reused = real()
            opened.append(reused)
            return conn, reused

        monkeypatch.setattr(transport.lean, "_connection", spy)
        try:
            transport.call("POST", "/x", json={"k": "é"})
            transport.call("POST", "/x", json={"k": "é"})
        finally:
            transport.close()
    assert opened == [False, False]  # a fresh connection each time, no failed attempt
    assert seen == ["POST /api/v1/x HTTP/1.1"] * 2


def test_error_answers_become_the_same_exceptions() -> None:
    envelope = json.dumps({"error": {"code": "not_found", "message": "no such model"}})
    with one_request_per_connection(404, envelope.encode()) as (url, _):
        transport = Transport(url, None)
        try:
            with pytest.raises(NotFound, match="no such model"):
                transport.call("GET", "/models/x")
        finally:
            transport.close()
    with one_request_per_connection(502, b"<html>bad gateway</html>") as (url, _):
        transport = Transport(url, None)
        try:
            with pytest.raises(StoreError, match="502 without an error envelope"):
                transport.call("GET", "/models/x")
        finally:
            transport.close()
    with one_request_per_connection(200, b"<html>a portal</html>") as (url, _):
        transport = Transport(url, None)
        try:
            with pytest.raises(StoreError, match="not JSON"):
                transport.call("GET", "/models/x")
        finally:
            transport.close()


def test_an_unreachable_server_is_one_clear_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    transport = Transport(f"http://127.0.0.1:{port}", None)
    try:
        with pytest.raises(StoreError, match="cannot reach the server"):
            transport.call("GET", "/models")
    finally:
        transport.close()


def test_a_proxy_in_the_environment_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("http_proxy", "http://proxy.example:3128")
    proxied = Transport("http://registry.example:7310", None)
    assert proxied.lean is None  # httpx, which speaks to proxies, takes every call
    proxied.close()
    monkeypatch.setenv("NO_PROXY", "registry.example")
    monkeypatch.setenv("no_proxy", "registry.example")
    direct = Transport("http://registry.example:7310", None)
    assert direct.lean is not None
    direct.close()


def test_a_registration_body_with_its_files_spliced_in_is_the_json_of_the_whole() -> None:
    import base64
    import os

    from modelvault.canonical import sha256_digest
    from modelvault.remote import _with_blobs

    files = [os.urandom(n) for n in (0, 1, 2, 3, 4096)]
    inline = {sha256_digest(f): base64.b64encode(f) for f in files}
    body = {"kind": "model", "params": {"q": 'quote " and \\ é \u2028'}, "run": None}
    sent = json.loads(_with_blobs(body, inline))
    assert sent == {**body, "blobs": {d: t.decode() for d, t in inline.items()}}
    assert json.loads(_with_blobs(body, {})) == {**body, "blobs": {}}
    with pytest.raises(InvalidInput):  # a key that is not a digest is never written as is
        _with_blobs(body, {'x", "y': b"QQ=="})
