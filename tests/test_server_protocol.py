"""The server's HTTP protocol (server/protocol.py): sockets read straight into the parser's
buffer, and body pieces handed to the app as the parser made them."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from uvicorn.server import ServerState

import modelvault.server.main as server_main
from modelvault import Settings
from modelvault.server import memory, protocol
from modelvault.server.protocol import LeanHttpProtocol, uvicorn_options

from .server_fixtures import live_server


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.writes: list[bytes] = []  # one entry per send the event loop would make
        self.paused = 0
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 7310), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def write(self, data: Any) -> None:
        self.out += data
        self.writes.append(bytes(data))

    def writelines(self, data: Any) -> None:
        self.writes.append(b"".join(data))
        self.out += self.writes[-1]

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        self.paused += 1

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def _connection(app: Any) -> tuple[LeanHttpProtocol, _Transport]:
    """A connection of the server's protocol to *app*, made (in a running loop) over a
    transport that records what is written."""
    config = uvicorn.Config(app, lifespan="off", **uvicorn_options())
    config.load()
    conn = LeanHttpProtocol(config=config, server_state=ServerState(), app_state={})
    transport = _Transport()
    conn.connection_made(transport)
    return conn, transport


def _feed(conn: LeanHttpProtocol, data: bytes) -> None:
    """As the event loop does: read into the protocol's buffer, then tell it how much."""
    while data:
        buffer = conn.get_buffer(len(data))
        n = min(len(buffer), len(data))
        buffer[:n] = data[:n]
        conn.buffer_updated(n)
        data = data[n:]


def test_a_body_piece_reaches_the_app_as_the_object_the_parser_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[bytes] = []
    parser_on_body = protocol._LeanBody.on_body

    def on_body(self: Any, body: bytes) -> None:
        made.append(body)
        parser_on_body(self, body)

    # (the parser looks its callbacks up once, when the connection's protocol is made)
    monkeypatch.setattr(protocol._LeanBody, "on_body", on_body)
    received: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            received.append(message)
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def run() -> None:
        conn, transport = _connection(app)
        one, two, three = os.urandom(5000), os.urandom(70_000), os.urandom(3000)
        head = f"PUT /x HTTP/1.1\r\nhost: h\r\ncontent-length: {5000 + 70_000 + 3000}\r\n\r\n"
        _feed(conn, head.encode() + one)
        await asyncio.sleep(0.01)  # the app takes the first piece
        _feed(conn, two)  # two pieces before the app asks again: gathered
        _feed(conn, three)
        await asyncio.sleep(0.01)
        assert transport.out.startswith(b"HTTP/1.1 204")
        assert transport.paused  # more than uvicorn's high-water mark held: reading paused
        assert b"".join(m["body"] for m in received) == one + two + three
        assert received[0]["body"] is made[0]  # not a copy of it (stock uvicorn copies twice)

    asyncio.run(run())
    assert len(made) == 3 and len(received) == 2


def test_a_response_head_and_its_body_leave_in_one_send() -> None:
    # uvicorn writes the status line and headers, then the body: two sends, two segments,
    # two wake-ups of the client. Its transport holds the head until the body comes.
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        length = [(b"content-length", b"11")]
        await send({"type": "http.response.start", "status": 200, "headers": length})
        await send({"type": "http.response.body", "body": b'{"ok":true}'})

    async def run() -> _Transport:
        conn, transport = _connection(app)
        for _ in range(2):  # a kept-alive connection: each response in one send
            _feed(conn, b"GET /x HTTP/1.1\r\nhost: h\r\n\r\n")
            await asyncio.sleep(0.01)
        return transport

    transport = asyncio.run(run())
    assert len(transport.writes) == 2
    for sent in transport.writes:
        assert sent.startswith(b"HTTP/1.1 200") and sent.endswith(b'{"ok":true}')


def test_a_held_write_leaves_at_the_end_of_the_step_or_before_anything_else() -> None:
    async def run() -> None:
        transport = _Transport()
        one = protocol._OneSend(transport)
        one.write(b"head")  # alone (a streamed body's first block is still being read)
        assert transport.writes == []
        await asyncio.sleep(0)
        assert transport.writes == [b"head"]
        large = os.urandom(protocol.JOIN)
        one.write(large)  # large writes are not held
        one.write(b"head")
        one.write(large)  # held + large: one writelines, no joined copy
        assert transport.writes == [b"head", large, b"head" + large]
        one.write(b"bye")
        one.close()  # what is held goes before the close
        assert transport.writes[-1] == b"bye" and transport.closed
        await asyncio.sleep(0)
        assert len(transport.writes) == 4  # and not twice

    asyncio.run(run())


def test_the_server_reads_sockets_into_its_own_buffer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[int] = []
    shared = protocol._buffer

    def counted() -> memoryview:
        reads.append(1)
        return shared()

    monkeypatch.setattr(protocol, "_buffer", counted)
    body = os.urandom(3 << 20)
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    with live_server(Settings.from_env(env={}, home=tmp_path / "home")) as live:
        with live.api(live.token("alice")) as client:
            answer = client.put("/blobs/" + digest, content=body)
        assert answer.status_code == 201, answer.text
        assert answer.json()["stored"] is True
        assert live.registry._ctx.blobs.read_bytes(digest) == body
    assert len(reads) >= 3  # uvloop read into get_buffer()'s buffer (the buffered path)


def test_serve_runs_uvicorn_with_these_options(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(memory, "keep_freed_memory", lambda: True)
    monkeypatch.setattr(server_main, "_open", lambda home: (None, None))
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: calls.append(options))
    server_main.serve(None, port=7399)
    assert calls == [{"host": "127.0.0.1", "port": 7399, **uvicorn_options()}]
    assert calls[0]["http"] is LeanHttpProtocol


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_bodies_arrive_whole_on_either_event_loop(
    loop: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """uvloop reads into get_buffer()'s buffer; so does asyncio's own loop (without uvloop)."""
    seen: list[str] = []
    reads: list[int] = []
    shared = protocol._buffer
    monkeypatch.setattr(protocol, "_buffer", lambda: reads.append(1) or shared())

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        digest = hashlib.sha256()
        while True:
            message = await receive()
            digest.update(message["body"])
            if not message.get("more_body"):
                break
        seen.append(digest.hexdigest())
        body = digest.hexdigest().encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", loop=loop)
    config.http = uvicorn_options()["http"]
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.005)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            for size in (0, 1, 5 << 20):
                body = os.urandom(size)
                # a kept-alive connection: each request's bytes follow the last one's
                answer = client.post("/", content=body)
                assert answer.text == hashlib.sha256(body).hexdigest()
    finally:
        server.should_exit = True
        thread.join(timeout=20)
    assert len(seen) == 3
    assert len(reads) >= 5  # 5 MiB came through the 1 MiB buffer
