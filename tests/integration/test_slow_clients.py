"""Slow clients: a connection whose request headers dribble in is answered 408 and closed after the header
timeout, keeps no task of the app busy, and other clients are answered meanwhile. Real sockets on loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from smoke.serving import serve_asgi

pytestmark = pytest.mark.slow

TIMEOUT = 1.5
"""The header timeout the server under test runs with (the default is 10 s)."""
HEADERS = b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"p" * 40 + b"\r\n\r\n"


class CountingApp:
    """Answers ``/hello`` at once and ``/slow`` after 2 x TIMEOUT; counts the requests it was handed."""

    def __init__(self) -> None:
        self.requests = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.requests += 1
        if scope["path"] == "/slow":
            await asyncio.sleep(2 * TIMEOUT)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture
async def served() -> AsyncIterator[tuple[CountingApp, str, int]]:
    app = CountingApp()
    async with serve_asgi(app, lifespan="off", header_timeout=TIMEOUT) as url:
        host, port = url.removeprefix("http://").split(":")
        yield app, host, int(port)


async def dribble(host: str, port: int, every: float = 0.5) -> tuple[float, bytes]:
    """Send ``HEADERS`` one byte every ``every`` seconds; how long until the server closed, and what it answered."""
    reader, writer = await asyncio.open_connection(host, port)
    started = time.monotonic()

    async def send_slowly() -> None:
        for byte in HEADERS:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(every)

    sender = asyncio.create_task(send_slowly())
    try:
        answer = await asyncio.wait_for(reader.read(-1), timeout=TIMEOUT + 5)
        return time.monotonic() - started, answer
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        writer.close()


async def test_headers_sent_a_byte_every_half_second_are_answered_408_and_the_connection_closed(
    served: tuple[CountingApp, str, int],
) -> None:
    app, host, port = served

    closed_after, answer = await dribble(host, port)

    assert TIMEOUT <= closed_after < TIMEOUT + 0.5
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert answer.endswith(b'{"detail":"Request headers not complete in time"}')
    assert app.requests == 0


async def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(
    served: tuple[CountingApp, str, int],
) -> None:
    _, host, port = served
    reader, writer = await asyncio.open_connection(host, port)
    started = time.monotonic()

    answer = await asyncio.wait_for(reader.read(-1), timeout=TIMEOUT + 5)

    assert TIMEOUT <= time.monotonic() - started < TIMEOUT + 0.5
    assert answer.startswith(b"HTTP/1.1 408 ")
    writer.close()


async def test_other_clients_are_answered_promptly_while_fifty_connections_dribble(
    served: tuple[CountingApp, str, int],
) -> None:
    app, host, port = served
    dribblers = [asyncio.create_task(dribble(host, port)) for _ in range(50)]
    await asyncio.sleep(0.2)
    latencies = []
    async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as client:
        while not all(task.done() for task in dribblers):
            started = time.monotonic()
            response = await client.get("/hello")
            latencies.append(time.monotonic() - started)
            assert response.status_code == 200
            await asyncio.sleep(0.05)
    results = await asyncio.gather(*dribblers)

    assert all(answer.startswith(b"HTTP/1.1 408 ") for _, answer in results)
    assert max(closed_after for closed_after, _ in results) < TIMEOUT + 1.0
    assert len(latencies) >= 10
    assert max(latencies) < 0.25
    assert app.requests == len(latencies)


async def test_the_limit_is_on_headers_only_not_on_a_long_response_or_a_pause_between_requests(
    served: tuple[CountingApp, str, int],
) -> None:
    _, host, port = served
    async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=10) as client:
        slow = await client.get("/slow")  # answered after 2 x TIMEOUT
        await asyncio.sleep(TIMEOUT + 0.5)  # idle on the kept-alive connection, under uvicorn's keep-alive of 5 s
        again = await client.get("/hello")

    assert (slow.status_code, again.status_code) == (200, 200)
