"""A fault proxy on loopback (a small toxiproxy): TCP between a client and an upstream, with toxics.

- ``slicer``: the upstream's bytes reach the client in slices of 1..7 bytes, each its own write (TCP_NODELAY), with a
  short pause between them, so every chunk boundary (inside a CRLF, a UTF-8 sequence, a field name) happens.
- ``cut_after`` (limit_data): once a chat response's headers have passed, forward that many body bytes, then reset
  both connections.
- ``stall_after`` (timeout 0): forward that many body bytes of a chat response, then nothing, connections held open.

A "chat response" is the answer on a connection whose client sent a request for ``.../v1/chat``. The proxy counts
bytes each way and the connections it holds, and notes when the client side of each connection closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

__all__ = ("Connection", "FaultProxy", "running_proxy")


@dataclass
class Connection:
    opened_at: float
    chat: bool = False
    client_closed_at: float | None = None
    upstream_closed_at: float | None = None
    body_bytes: int = 0
    headers_done: bool = False
    header_tail: bytes = b""


@dataclass
class FaultProxy:
    upstream: tuple[str, int]
    slicer: bool = True
    pause: float = 0.0005
    cut_after: int | None = None
    stall_after: int | None = None
    seed: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    slices_down: int = 0
    connections: list[Connection] = field(default_factory=list)
    port: int = 0
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _rng: random.Random = field(default_factory=random.Random)

    @property
    def open_connections(self) -> int:
        return sum(c.client_closed_at is None for c in self.connections)

    def reset_connections(self) -> None:
        """Reset every connection now (new ones go to the current ``upstream``, with the current toxics)."""
        for writer in list(self._writers):
            writer.transport.abort()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        conn = Connection(time.monotonic())
        self.connections.append(conn)
        self._writers.add(client_writer)
        _no_delay(client_writer)
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_writer.transport.abort()
            self._writers.discard(client_writer)
            conn.client_closed_at = time.monotonic()
            return
        self._writers.add(upstream_writer)
        _no_delay(upstream_writer)
        up = asyncio.create_task(self._pump_up(client_reader, upstream_writer, conn))
        down = asyncio.create_task(self._pump_down(upstream_reader, client_writer, conn))
        try:
            # Whichever side closes first, the other is closed at once (the client leaving closes the upstream).
            await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (up, down):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, OSError):
                    await task
            for writer in (client_writer, upstream_writer):
                self._writers.discard(writer)
                writer.transport.abort()
            conn.client_closed_at = conn.client_closed_at or time.monotonic()
            conn.upstream_closed_at = time.monotonic()

    async def _pump_up(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: Connection) -> None:
        while data := await reader.read(65536):
            first_line = data.split(b"\r\n", 1)[0]
            if first_line.endswith(b" HTTP/1.1"):  # a new request on this connection
                conn.chat, conn.headers_done, conn.header_tail, conn.body_bytes = (
                    b"/v1/chat " in first_line,
                    False,
                    b"",
                    0,
                )
            self.bytes_up += len(data)
            writer.write(data)
            await writer.drain()
        conn.client_closed_at = time.monotonic()

    async def _pump_down(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: Connection) -> None:
        while data := await reader.read(65536):
            if conn.chat and (self.cut_after is not None or self.stall_after is not None):
                data, stop = self._limit(data, conn)
                await self._write(writer, data)
                if stop == "cut":
                    writer.transport.abort()
                    return
                if stop == "stall":
                    await asyncio.Event().wait()  # hold everything open, forward nothing more
            else:
                await self._write(writer, data)

    def _limit(self, data: bytes, conn: Connection) -> tuple[bytes, str | None]:
        """The part of ``data`` to forward, and whether to cut or stall after it."""
        forwarded = b""
        if not conn.headers_done:
            seen = conn.header_tail + data
            end = seen.find(b"\r\n\r\n")
            if end < 0:
                conn.header_tail = seen[-3:]
                return data, None
            conn.headers_done = True
            header_part = end + 4 - len(conn.header_tail)
            forwarded, data = data[:header_part], data[header_part:]
        limit = self.cut_after if self.cut_after is not None else self.stall_after
        assert limit is not None
        room = limit - conn.body_bytes
        if len(data) < room:
            conn.body_bytes += len(data)
            return forwarded + data, None
        conn.body_bytes = limit
        return forwarded + data[: max(room, 0)], "cut" if self.cut_after is not None else "stall"

    async def _write(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        self.bytes_down += len(data)
        if not self.slicer:
            writer.write(data)
            await writer.drain()
            return
        offset = 0
        while offset < len(data):
            size = self._rng.randint(1, 7)
            writer.write(data[offset : offset + size])
            self.slices_down += 1
            offset += size
            await writer.drain()
            await asyncio.sleep(self.pause)


def _no_delay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


@contextlib.asynccontextmanager
async def running_proxy(upstream: tuple[str, int], **toxics: object) -> AsyncIterator[FaultProxy]:
    proxy = FaultProxy(upstream, **toxics)  # type: ignore[arg-type]
    proxy._rng.seed(proxy.seed)
    server = await asyncio.start_server(proxy._handle, "127.0.0.1", 0)
    proxy.port = server.sockets[0].getsockname()[1]
    try:
        yield proxy
    finally:
        server.close()
        proxy.reset_connections()
        await server.wait_closed()
