"""A small TCP proxy a test can cut and restore, to take a dependency away from a service."""

from __future__ import annotations

import asyncio
import contextlib


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, source: str | None = None) -> None:
        self.target = (target_host, target_port)
        # The address its connections to the target come from (all of 127/8 is loopback), so
        # that a test can be a caller with an address of its own.
        self.source = (source, 0) if source else None
        self.port = 0
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()

    async def open(self) -> None:
        """Listens (again, on the same port) and forwards every connection to the target."""
        self._server = await asyncio.start_server(self._link, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Stops listening and drops every open connection: the target is unreachable."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._links):
            writer.transport.abort()
        self._links.clear()

    async def _link(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        try:
            target_reader, target = await asyncio.open_connection(
                *self.target, local_addr=self.source
            )
        except OSError:
            client.transport.abort()
            return
        self._links |= {client, target}
        await asyncio.gather(self._pipe(client_reader, target), self._pipe(target_reader, client))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        self._links.discard(writer)
        writer.transport.abort()
