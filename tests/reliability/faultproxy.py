"""A fault-injecting HTTP proxy on loopback: forwards requests to an upstream server, and
answers the ones a rule picks with an error status, a delay, or a body cut off mid-way."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

Match = Callable[[str, str], bool]  # (method, path with query) -> does the rule apply
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "expect", "content-length"}
_CODES = {403: "AccessDenied", 500: "InternalError", 503: "SlowDown"}


def any_request(method: str, path: str) -> bool:
    return True


def method_is(wanted: str) -> Match:
    return lambda method, path: method == wanted


def part_upload(method: str, path: str) -> bool:
    return method == "PUT" and "partNumber=" in path


@dataclass
class Rule:
    """Apply *action* ("status", "delay" or "cut") to matching requests, *times* times
    (None: forever)."""

    action: str
    match: Match
    times: int | None = None
    status: int = 500
    seconds: float = 0.0
    hits: int = 0


class FaultProxy:
    """``with FaultProxy(upstream) as proxy:`` then point a client at ``proxy.url``."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.rules: list[Rule] = []
        self.seen: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.proxy = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def fail(self, status: int, match: Match = any_request, times: int | None = None) -> Rule:
        return self._add(Rule("status", match, times, status=status))

    def delay(self, seconds: float, match: Match = any_request, times: int | None = None) -> Rule:
        return self._add(Rule("delay", match, times, seconds=seconds))

    def cut(self, match: Match = any_request, times: int | None = None) -> Rule:
        return self._add(Rule("cut", match, times))

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def _add(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def take(self, method: str, path: str) -> Rule | None:
        with self._lock:
            self.seen.append((method, path))
            for rule in self.rules:
                if (rule.times is None or rule.hits < rule.times) and rule.match(method, path):
                    rule.hits += 1
                    return rule
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    proxy: FaultProxy

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients that gave up (timeouts, cuts) break pipes here; that is the point."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._relay()

    do_HEAD = do_PUT = do_POST = do_DELETE = do_GET

    def _relay(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        rule = self.server.proxy.take(self.command, self.path)
        if rule is not None and rule.action == "status":
            self._error(rule.status)
            return
        if rule is not None and rule.action == "delay":
            time.sleep(rule.seconds)
        status, headers, payload = self._forward(body)
        self.send_response_only(status)
        for name, value in headers:
            self.send_header(name, value)
        if self.command == "HEAD":
            self.end_headers()
            return
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if rule is not None and rule.action == "cut":
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(payload)

    def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        host, port = self.server.proxy.upstream
        upstream = http.client.HTTPConnection(host, port, timeout=30)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            if body or self.command in ("PUT", "POST"):
                headers["Content-Length"] = str(len(body))
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            payload = response.read()
            # A HEAD's Content-Length is the object's size, not the (empty) body's.
            keep = {"content-length"} if self.command == "HEAD" else set()
            kept = [
                (k, v)
                for k, v in response.getheaders()
                if k.lower() not in _HOP_BY_HOP or k.lower() in keep
            ]
            return response.status, kept, payload
        finally:
            upstream.close()

    def _error(self, status: int) -> None:
        code = _CODES.get(status, "InjectedFault")
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
            f"<Message>injected by the fault proxy</Message><RequestId>fault</RequestId></Error>"
        ).encode()
        self.send_response_only(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", "0" if self.command == "HEAD" else str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
