"""A scripted agent VPS (docs/api.md) for the SSE rows: it answers ``/healthz`` and streams one of a few scripts.

The chat ``message`` picks the script:

- ``corpus``: the framing corpus of test-plan row 9 (BOM, comments, ``retry``, CRLF / CR / LF, multi-line data,
  multi-byte UTF-8, a field without a colon, a NUL in an id, an event after ``done``), in random 1..50 byte writes;
- ``id-reset``: events with ids, then one whose ``id`` field has no value (the last event id is reset);
- ``timed N``: N ``delta`` events 20 ms apart, each carrying ``time.monotonic()`` of the moment it was sent (the
  agent runs in the test's process, so the client can tell how long each event took to reach it).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Iterator
from typing import Any

from smoke.sse import SseEvent, SseParser

__all__ = ("CORPUS", "ID_RESET", "ScriptedAgent", "expected_events")

USAGE = '{"usage": {"provider": "scripted", "model": "corpus-1", "input_tokens": 1, "output_tokens": 1}}'
CORPUS = (
    "\ufeff: a comment first, after a byte order mark\n"
    "retry: 3000\n\n"
    'event: delta\r\nid: 1\r\ndata: {"text": "h\u00e9llo \u4e16\u754c \U0001f600"}\r\n\r\n'
    "data: line one\rdata: line two\r\r"
    ": heartbeat\n\n"
    "event: delta\nid: 7\ndata:no space\ndata:  two leading spaces\n\n"
    "data\n\n"
    "event: delta\nfield-without-colon\ndata: x\n\n"
    "id: 8\u0000x\ndata: an id holding NUL is ignored\n\n"
    "event: delta\n: a comment between fields\ndata: {}\n\n"
    "event: delta\ndata: \u00e9\u00e8\u00ea \u2028 \u0394\u03b9\n\n"
    f"event: done\nid: 9\ndata: {USAGE}\n\n"
    "event: delta\ndata: after done: never relayed\n\n"
).encode()
ID_RESET = (
    'event: delta\nid: 1\ndata: {"text": "a"}\n\n'
    'event: delta\nid\ndata: {"text": "the last event id is reset"}\n\n'
    f"event: done\ndata: {USAGE}\n\n"
).encode()


def expected_events(stream: bytes) -> list[SseEvent]:
    """The events a spec parser reads from ``stream`` in one piece, up to and including ``done``."""
    events = []
    for event in SseParser().feed(stream):
        events.append(event)
        if event.event == "done":
            break
    return events


class ScriptedAgent:
    """The ASGI app; ``chats`` counts the turns it served."""

    def __init__(self, seed: int = 3) -> None:
        self.chats = 0
        self._rng = random.Random(seed)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"].endswith("/healthz"):
            await _answer(send, 200, b'{"status": "ok"}', "application/json")
        elif scope["path"].endswith("/v1/chat") and scope["method"] == "POST":
            self.chats += 1
            await self._chat(str(json.loads(body)["message"]), send)
        else:
            await _answer(send, 404, b'{"detail": "not found"}', "application/json")

    async def _chat(self, message: str, send: Any) -> None:
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if message.startswith("timed "):
            for chunk in _timed(int(message.split()[1])):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await asyncio.sleep(0.02)
        else:
            stream = ID_RESET if message == "id-reset" else CORPUS
            for chunk in self._pieces(stream):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _pieces(self, data: bytes) -> Iterator[bytes]:
        offset = 0
        while offset < len(data):
            size = self._rng.randint(1, 50)
            yield data[offset : offset + size]
            offset += size


def _timed(count: int) -> Iterator[bytes]:
    for n in range(1, count + 1):
        data = json.dumps({"text": f" w{n}", "sent": time.monotonic()})
        yield f"event: delta\nid: {n}\ndata: {data}\n\n".encode()
    yield f"event: done\nid: {count + 1}\ndata: {USAGE}\n\n".encode()


async def _answer(send: Any, status: int, body: bytes, media_type: str) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", media_type.encode())]})
    await send({"type": "http.response.body", "body": body})
