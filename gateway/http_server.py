"""The gateway's HTTP/1.1 server: uvicorn on httptools (llhttp, in C; h11 costs about twice its
CPU a request), with the bound on a request's head that h11 kept and httptools lacks."""

from __future__ import annotations

from typing import Any

import orjson
import uvicorn
from google.rpc import code_pb2
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway import errors, security

# What the parser reads of a request's head before the app sees it. Larger than the app's own
# header limits (gateway.app.MAX_HEADERS_BYTES), so that any head up to it gets the app's 431
# with the request's id; only a head past it is refused here, before it is all in memory.
MAX_REQUEST_HEAD_BYTES = 256 * 1024


def _too_large_response() -> bytes:
    body = orjson.dumps(
        errors.status_json(
            code_pb2.INVALID_ARGUMENT, f"the request's head is over {MAX_REQUEST_HEAD_BYTES} bytes"
        )
    )
    head = [
        b"HTTP/1.1 431 Request Header Fields Too Large",
        b"content-type: application/json",
        b"content-length: " + str(len(body)).encode(),
        b"connection: close",
        *(name + b": " + value for name, value in security.headers_for("/")),
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


TOO_LARGE = _too_large_response()


class HeadLimitedHttpTools(HttpToolsProtocol):
    """httptools gathers a head's URL and header lines in memory with no limit (h11 has
    max_incomplete_event_size): an endless header line would grow until the process dies. The
    bytes fed to the parser while it reads a head are counted, in pieces no larger than what is
    left of the limit, and a head past it is answered 431 and its connection closed. Bytes of a
    next request's head that arrive in one read with the end of a body go uncounted: at most
    one read's worth, so memory stays bounded all the same."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0

    def data_received(self, data: bytes) -> None:
        while data and not self.transport.is_closing():
            if not self._in_head:
                super().data_received(data)  # a body: the app bounds its size
                return
            left = MAX_REQUEST_HEAD_BYTES - self._head_bytes + 1
            piece, data = data[:left], data[left:]
            self._head_bytes += len(piece)
            super().data_received(piece)
            if self._in_head and self._head_bytes > MAX_REQUEST_HEAD_BYTES:
                self.transport.write(TOO_LARGE)
                self.transport.close()
                return

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head, self._head_bytes = True, 0
        super().on_message_complete()


def config(app: Any, host: str, port: int, **options: Any) -> uvicorn.Config:
    """The uvicorn configuration the gateway runs with (its tests' real-port server too)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=HeadLimitedHttpTools,
        log_level="warning",
        access_log=False,
        lifespan="on",
        # The app itself decides whose X-Forwarded-For to believe (GATEWAY_TRUSTED_PROXIES);
        # uvicorn's own handling would believe 127.0.0.1's by default.
        proxy_headers=False,
        **options,
    )
