"""A raw HTTP/1.1 client, for requests no well-behaved client sends (header values with NUL, Latin-1, trailing
spaces, 60 KiB): it writes the bytes as given and parses the answer with h11."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import h11

__all__ = ("RawResponse", "raw_request")


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def raw_request(
    host: str, port: int, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes | None = None
) -> RawResponse:
    lines = [f"{method} {path} HTTP/1.1".encode(), f"Host: {host}:{port}".encode(), b"Connection: close"]
    if body is not None:
        lines += [b"Content-Type: application/json", b"Content-Length: " + str(len(body)).encode()]
    lines += [name + b": " + value for name, value in headers]
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + (body or b""))
        await writer.drain()
        data = await asyncio.wait_for(reader.read(-1), 30)
    finally:
        writer.close()
    parser = h11.Connection(h11.CLIENT)
    parser.send(h11.Request(method=method, target=path, headers=[("Host", host)]))
    parser.receive_data(data)
    parser.receive_data(b"")
    status, response_headers, content = 0, {}, b""
    while (event := parser.next_event()) is not h11.NEED_DATA and not isinstance(event, h11.ConnectionClosed):
        if isinstance(event, h11.Response):
            status = event.status_code
            response_headers = {k.decode().lower(): v.decode("latin-1") for k, v in event.headers}
        elif isinstance(event, h11.Data):
            content += event.data
        elif isinstance(event, h11.EndOfMessage):
            break
    return RawResponse(status, response_headers, content)
