"""The HTTP protocol the server runs under uvicorn: uvicorn's own (httptools) protocol, fed
from a reused buffer and handing request bodies over with fewer copies.

Stock, each piece of a body is copied five times before the app sees it: by the kernel into
the event loop's read buffer, into a new bytes object for ``data_received``, by the parser
into another for ``on_body``, onto the request's ``bytearray``, and out of it again into the
bytes of the ASGI message. For a 1 GiB upload that was ~0.2 s of the server's ~1.3 s of CPU,
in the one thread (the event loop's) that also hashes what arrives. Here it is copied twice:
the kernel reads the socket straight into a buffer the parser reads in place
(``asyncio.BufferedProtocol``, 1 MiB reads instead of 256 KB ones), and the parser's copy is
handed over as it is when the app has not yet asked for the one before.

And a response's status line and headers leave in one ``send()`` with its body: uvicorn
writes them to the transport separately, two segments on the wire and two wake-ups of the
client. Everything else is uvicorn's.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

READ = 1 << 20  # bytes read from the socket at once (at most)
HOLD = 16 << 10  # a write this small (a response's head) waits for the one after it
JOIN = 256 << 10  # joined into one bytes object up to this size; beyond, written as a list

_local = threading.local()


def _buffer() -> memoryview:
    """The event loop thread's read buffer: the parser consumes all of it before the loop
    reads any other socket, so the connections of one loop share it."""
    buffer: memoryview | None = getattr(_local, "buffer", None)
    if buffer is None:
        buffer = _local.buffer = memoryview(bytearray(READ))
    return buffer


class _LeanBody(HttpToolsProtocol):
    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if (self.parser.should_upgrade() and self._should_upgrade()) or cycle.response_complete:
            return
        held: bytes | bytearray = cycle.body
        if not held:
            # the ASGI message carries bytes(held): the very object the parser made
            held = body
        elif type(held) is bytes:  # a second piece before the app asked for the first
            held = bytearray(held) + body
        else:
            held += body
        # (bytes or bytearray: the message takes bytes() of either)
        cycle.body = held  # type: ignore[assignment]
        if len(held) > HIGH_WATER_LIMIT:
            self.flow.pause_reading()
        cycle.message_event.set()


class _OneSend:
    """The connection's transport, as uvicorn's protocol sees it: a small write waits for
    the next one or for the end of the event loop's current step, whichever comes first.

    A handler's response goes out as two writes in one step (its head, then its body), so
    the two leave in one ``send()``. A head whose body comes later (a streamed download
    whose first block is being read) leaves at the end of the step, as it would have."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held: bytes | None = None
        self._loop = asyncio.get_running_loop()

    def write(self, data: bytes) -> None:
        held = self._held
        if held is None:
            if len(data) <= HOLD:
                self._held = data
                self._loop.call_soon(self._flush)
            else:
                self._transport.write(data)
            return
        self._held = None
        if len(held) + len(data) <= JOIN:
            self._transport.write(held + data)
        else:
            self._transport.writelines((held, data))

    def _flush(self) -> None:
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._flush()
        self._transport.set_protocol(protocol)


class LeanHttpProtocol(asyncio.BufferedProtocol):
    """uvicorn's ``http`` protocol class: made per connection with uvicorn's arguments."""

    def __init__(self, **kwargs: Any) -> None:
        self.http = _LeanBody(**kwargs)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.http.connection_made(_OneSend(transport))  # type: ignore[arg-type]

    def connection_lost(self, exc: Exception | None) -> None:
        self.http.connection_lost(exc)

    def eof_received(self) -> None:
        self.http.eof_received()

    def pause_writing(self) -> None:
        self.http.pause_writing()

    def resume_writing(self) -> None:
        self.http.resume_writing()

    def get_buffer(self, sizehint: int) -> memoryview:
        return _buffer()

    def buffer_updated(self, nbytes: int) -> None:
        # the parser reads the bytes in place (it takes any buffer) and copies what it keeps
        self.http.data_received(_buffer()[:nbytes])  # type: ignore[arg-type]


def uvicorn_options() -> dict[str, Any]:
    """How uvicorn runs the server (the tests' servers run the same way)."""
    # no websocket routes: "none" spares loading a websocket implementation at start
    return {"http": LeanHttpProtocol, "ws": "none", "log_level": "warning", "access_log": False}
