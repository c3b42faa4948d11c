"""Smoke Chat's relay taken apart, for figure 2: smoke's own relay code on a bare ASGI app, with or without its read.

``RELAY_LAYERS`` says what runs between the request and the agent, always without Litestar and the API's
middleware:

- ``pipeline``: the request is sent with smoke's agent client (``HttpAgentClient`` on ``agent_session``) and its
  events pass through smoke's relay (``smoke.api.sse.relay``: SSE parsing, re-encoding, the reader task, the
  keep-alive timer), as Smoke Chat does, but nothing is read from the database first;
- ``pipeline+read``: the same after the instance is read through smoke's ``AsyncpgInstanceReader`` (its pool, its
  query), as ``ChatRelay.open`` reads it to authorize the turn.

The agent is fixed by the environment (``BARE_RELAY_AGENT_URL``, ``BARE_RELAY_AGENT_TOKEN``; the instance for the
read: ``RELAY_LAYERS_INSTANCE_ID``, with ``DATABASE_URL``). Serve it with uvicorn, as ``benchmarks/apps/bare_relay.py``.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from typing import Any

import asyncpg

from benchmarks.apps.bare_relay import answered_probe, request_body
from smoke.adapters.agent import HttpAgentClient, agent_session
from smoke.adapters.postgres.reads import AsyncpgInstanceReader, nothing_to_reset
from smoke.api.sse import relay
from smoke.domain.models import InstanceStatus
from smoke.domain.services import ChatTurn
from smoke.settings import Settings

_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")],
}
_READ = os.environ.get("RELAY_LAYERS", "pipeline") == "pipeline+read"
_HELD: dict[str, Any] = {}


async def _lifespan(receive: Any, send: Any) -> None:
    async with contextlib.AsyncExitStack() as stack:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                _HELD["agents"] = HttpAgentClient(await stack.enter_async_context(agent_session()))
                if _READ:
                    pool = await asyncpg.create_pool(os.environ["DATABASE_URL"], min_size=1, reset=nothing_to_reset)
                    stack.push_async_callback(pool.close)
                    _HELD["reader"] = AsyncpgInstanceReader(pool, Settings().customer_scope())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                break
    await send({"type": "lifespan.shutdown.complete"})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if await answered_probe(scope, send):
        return
    await request_body(receive)  # read and dropped: the turn's message is fixed
    if _READ:
        instance = await _HELD["reader"].instance(uuid.UUID(os.environ["RELAY_LAYERS_INSTANCE_ID"]))
        assert instance is not None
        assert instance.status is InstanceStatus.RUNNING
    url = os.environ["BARE_RELAY_AGENT_URL"].removesuffix("/v1/chat")
    stream = await _HELD["agents"].open_chat(url, os.environ["BARE_RELAY_AGENT_TOKEN"], "hello")
    await send(_START)
    async for chunk in relay(ChatTurn(stream), keepalive=15, turn_timeout=300):
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})
