"""The floor of figure 2: a relay with nothing but the hop, on the same server and client libraries as smoke's.

A bare ASGI app (no framework, no auth, no database read, no SSE parsing) that answers every ``POST`` by sending its
body to one agent with aiohttp and passing the agent's bytes on as they arrive. The agent is fixed by the
environment: ``BARE_RELAY_AGENT_URL`` (its ``/v1/chat``) and ``BARE_RELAY_AGENT_TOKEN``. Serve it with uvicorn
(uvloop, httptools), as ``smoke serve`` serves the smoke API. What smoke adds on top of this is its own cost;
what this adds over going straight to the agent is the cost of one more process and one more connection here.
"""

from __future__ import annotations

import os
from typing import Any

import aiohttp

_SESSION: list[aiohttp.ClientSession] = []
_START = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]}


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            _SESSION.append(aiohttp.ClientSession(auto_decompress=False))
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await _SESSION.pop().close()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def answered_probe(scope: dict[str, Any], send: Any) -> bool:
    """Whether this was the harness's readiness probe (any request but a ``POST``), now answered ``200 ok``."""
    if scope["method"] == "POST":
        return False
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
    return True


async def request_body(receive: Any) -> bytes:
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    return body


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if await answered_probe(scope, send):
        return
    body = await request_body(receive)
    headers = {"Authorization": f"Bearer {os.environ['BARE_RELAY_AGENT_TOKEN']}", "Content-Type": "application/json"}
    async with _SESSION[0].post(os.environ["BARE_RELAY_AGENT_URL"], data=body, headers=headers) as response:
        await send(_START)
        async for chunk in response.content.iter_any():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})
