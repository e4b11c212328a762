"""The gateway's HTTP server on a real port (httptools): a request's head past
MAX_REQUEST_HEAD_BYTES is refused with a 431 Status before it is all read, however it is
split, while bodies of any allowed size and the heads that follow them on one connection are
not counted against it."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import urlsplit

import pytest

from gateway.http_server import MAX_REQUEST_HEAD_BYTES


async def exchange(url: str, chunks: list[bytes]) -> bytes:
    """Sends the chunks one write each, then reads until the server closes or goes quiet."""
    address = urlsplit(url)
    assert address.hostname is not None and address.port is not None
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    try:
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
        received = b""
        while True:
            try:
                part = await asyncio.wait_for(reader.read(65536), 5)
            except TimeoutError:
                return received
            if not part:
                return received
            received += part
    except ConnectionResetError:
        return received
    finally:
        writer.close()


def answers(raw: bytes) -> list[tuple[int, bytes]]:
    """Every response's status and body (content-length framed)."""
    found = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        fields = dict(line.split(b": ", 1) for line in lines[1:])
        length = int(fields.get(b"content-length", b"0"))
        found.append((status, rest[:length]))
        raw = rest[length:]
    return found


@pytest.mark.parametrize("pieces", [1, 40])
async def test_a_head_past_the_limit_is_a_431_status(gateway_url: str, pieces: int) -> None:
    header = b"X-Padding: " + b"a" * (MAX_REQUEST_HEAD_BYTES + 1024) + b"\r\n"
    step = len(header) // pieces + 1
    chunks = [b"GET /v1/tariffs HTTP/1.1\r\nHost: gateway\r\n"]
    chunks += [header[i : i + step] for i in range(0, len(header), step)]
    # Never ends its head: the answer cannot wait for it.
    (answer,) = answers(await exchange(gateway_url, chunks))
    assert answer[0] == 431
    assert json.loads(answer[1])["code"] == 3


async def test_bodies_and_the_heads_after_them_are_not_counted_as_a_head(
    gateway_url: str,
) -> None:
    body = b'{"email": "' + b"x" * (MAX_REQUEST_HEAD_BYTES + 1000) + b'", "password": "p"}'
    post = (
        b"POST /v1/auth/login HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    get = b"GET /livez HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n"
    # The body and the next request's head in one write, as a pipelining client sends them.
    statuses = [status for status, _ in answers(await exchange(gateway_url, [post + get]))]
    assert statuses == [400, 200]
