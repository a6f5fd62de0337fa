"""The HTTP/1.1 protocol ``cadre serve`` runs: uvicorn's httptools one, with a bounded head.

httptools has no limit of its own on a request head: it gathers a header value (or a
URL) of any length in memory before uvicorn sees it, and uvicorn only times out idle
keep-alive connections, so one 8 MiB header, or a head trickled a byte at a time, held
memory or a connection for as long as the client liked. This subclass counts the raw
bytes of each head before they reach the parser and times each head from its first byte
(or from the connection, for a client that sends nothing):

* a head over ``CADRE_MAX_HEADER_BYTES`` gets 431 ``headers_too_large``;
* a head unfinished after ``CADRE_REQUEST_HEADER_TIMEOUT_SECONDS`` gets 408
  ``request_timeout`` (or, if nothing was sent, the connection is just closed);
* a WebSocket upgrade beyond ``CADRE_MAX_CONNECTIONS`` (uvicorn's ``limit_concurrency``,
  which it checks for plain requests only) gets 503 ``service_unavailable``.

Pipelined requests are counted each from its own first byte, as far as one read shows
it: a head that begins in the same read as the previous request's end may have up to
that read's size (uvloop reads at most 256 KiB) go uncounted, once.

Refused connections are closed "lingering": the reply is sent, the write side shut,
and whatever the client still sends is read and dropped for a moment, so that the
client reads the reply instead of a connection reset. The limits come from
``Settings`` once per worker process (uvicorn builds protocols from a class name).

WebSockets run uvicorn's sans-I/O protocol (``WebSocketProtocol``) with per-message
deflate in smaller windows than uvicorn's (2**12 bytes, ``memLevel`` 5): each
connection keeps its compressor and decompressor for its whole life, about 41 KiB at
uvicorn's sizes, 41 MB at 1,000 streams. Stream frames are small JSON texts (a token
frame is about 150 bytes) repeating the same keys, which a 512-byte window (the least
zlib compresses with) still finds: they compress as well at about 16 KiB a connection.
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory

from cadre.problems import PROBLEM_TYPE_BASE

PROTOCOL = "cadre.server:HttpProtocol"
WS_PROTOCOL = "cadre.server:WebSocketProtocol"
DEFLATE_WINDOW_BITS = 9  # 512 bytes: zlib's least for compressing
DEFLATE_MEM_LEVEL = 1
LINGER_SECONDS = 2.0


@functools.cache
def _limits() -> tuple[int, float]:
    from cadre.settings import Settings

    settings = Settings()
    return settings.max_header_bytes, settings.request_header_timeout_seconds


def problem_reply(status: int, title: str, error: str, message: str) -> bytes:
    """A complete ``application/problem+json`` reply, closing the connection."""
    request_id = f"req_{random.getrandbits(96):024x}"
    body = json.dumps(
        {
            "type": PROBLEM_TYPE_BASE + error,
            "title": title,
            "status": status,
            "detail": message,
            "error": error,
            "message": message,
            "details": {},
            "request_id": request_id,
        }
    ).encode()
    head = [
        STATUS_LINE[status],
        b"content-type: application/problem+json\r\n",
        b"content-length: %d\r\n" % len(body),
        b"x-request-id: " + request_id.encode() + b"\r\n",
        b"connection: close\r\n\r\n",
    ]
    return b"".join(head) + body


class HttpProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_head_bytes, self.head_timeout = _limits()
        self._head_bytes = 0  # raw bytes of the current head seen so far
        self._reading_head = True
        self._head_timer: asyncio.TimerHandle | None = None
        self._lingering = False
        self._messages = 0  # requests whose end the parser has seen

    # --- the connection ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # a refused client's leftovers
        if not self._reading_head:
            super().data_received(data)
            return
        room = self.max_head_bytes - self._head_bytes
        if len(data) <= room:
            self._head_bytes += len(data)
            super().data_received(data)
            return
        # Only what fits goes to the parser: the head must end within it, unless a
        # pipelined request ended in it and the next one began (its head is then counted
        # from the rest on: at most ``room`` bytes of it go uncounted).
        self._head_bytes, messages = self.max_head_bytes, self._messages
        if room > 0:
            super().data_received(data[:room])
        if self.parser is None or self.transport.is_closing():
            return
        if self._reading_head and self._messages == messages:
            self._refuse(
                431,
                "Request Header Fields Too Large",
                "headers_too_large",
                f"The request line and headers may take at most {self.max_head_bytes} bytes.",
            )
        elif self.transport.get_protocol() is self:  # not upgraded to a WebSocket
            self.data_received(data[room:])

    # --- parser callbacks --------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._disarm_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading_head, self._head_bytes = True, 0
        self._messages += 1

    def handle_websocket_upgrade(self) -> None:
        limit = self.limit_concurrency
        if limit is not None and (len(self.connections) >= limit or len(self.tasks) >= limit):
            self.logger.warning("Exceeded concurrency limit.")
            self._refuse(
                503,
                "Service Unavailable",
                "service_unavailable",
                "The server has as many connections as it takes; try again shortly.",
            )
            return
        super().handle_websocket_upgrade()

    # --- limits ------------------------------------------------------------------------

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._reading_head or self.transport.is_closing():
            return
        if self._head_bytes == 0:
            self.transport.close()  # connected and sent nothing: no one to tell
            return
        self._refuse(
            408,
            "Request Timeout",
            "request_timeout",
            f"The request line and headers must arrive within {self.head_timeout:g} seconds.",
        )

    def _refuse(self, status: int, title: str, error: str, message: str) -> None:
        """Reply, shut the write side, drop what still comes for a moment, then close."""
        self._disarm_head_timer()
        self._lingering = True
        self.transport.write(problem_reply(status, title, error, message))
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()


@functools.cache
def _deflate_factory() -> ServerPerMessageDeflateFactory:
    return ServerPerMessageDeflateFactory(
        server_max_window_bits=DEFLATE_WINDOW_BITS,
        client_max_window_bits=DEFLATE_WINDOW_BITS,
        compress_settings={"memLevel": DEFLATE_MEM_LEVEL},
    )


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol, its per-message deflate in small windows."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.config.ws_per_message_deflate:  # the factory only holds the settings
            self.conn.available_extensions = [_deflate_factory()]
