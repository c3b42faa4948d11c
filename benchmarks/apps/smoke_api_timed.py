"""The smoke API of ``benchmarks/apps/smoke_api.py`` with the phases of each Smoke Chat turn timed: no change.

For ``benchmarks/profile_chat.py``. Per turn, one JSON line on stderr: milliseconds from the request reaching the
app to the token check, the body's decoding, ``ChatRelay.open``, the instance read, the agent request, its
response headers, its first event, and the first chunk handed to the server. Serve it with uvicorn.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import smoke.adapters.agent as agent
import smoke.api.auth as auth
import smoke.api.controllers.smoke as controller
from smoke.adapters.postgres import reads
from smoke.api.bodies import JsonRequest
from smoke.domain.services import chat_relay

MARKS: dict[str, float] = {}


def _mark(name: str) -> None:
    MARKS.setdefault(name, time.perf_counter())


def _timed(cls: Any, name: str, before: str | None, after: str | None) -> None:
    original = getattr(cls, name)

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if before:
            _mark(before)
        result = await original(*args, **kwargs)
        if after:
            _mark(after)
        return result

    setattr(cls, name, wrapper)


_timed(chat_relay.ChatRelay, "open", "relay_open", None)
_timed(reads.AsyncpgInstanceReader, "instance", None, "instance_read")
_timed(agent.HttpAgentClient, "open_chat", "agent_request", "agent_headers")
_timed(JsonRequest, "json", "body_read", "body_decoded")
_check = auth.ops_bearer_check


async def _timed_check(connection: Any) -> None:
    _mark("token_check")
    await _check(connection)


controller.SmokeController.before_request = staticmethod(_timed_check)  # type: ignore[assignment]
_events = agent.HttpChatStream.__aiter__


async def _timed_events(self: agent.HttpChatStream) -> AsyncIterator[Any]:
    async for event in _events(self):
        _mark("agent_first_event")
        yield event


agent.HttpChatStream.__aiter__ = _timed_events  # type: ignore[method-assign]

from benchmarks.apps.smoke_api import app as _app  # noqa: E402  (after the wrappers are in place)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http" or not scope["path"].endswith("/chat"):
        await _app(scope, receive, send)
        return
    MARKS.clear()
    MARKS["start"] = time.perf_counter()

    async def timed_send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and message.get("body") and "first_chunk_sent" not in MARKS:
            _mark("first_chunk_sent")
            line: dict[str, float] = {
                k: round((v - MARKS["start"]) * 1e3, 3) for k, v in sorted(MARKS.items(), key=lambda kv: kv[1])
            }
            line["clock"] = MARKS["start"]  # perf_counter is CLOCK_MONOTONIC: the client's clock too
            print(json.dumps(line), file=sys.stderr, flush=True)
        await send(message)

    await _app(scope, receive, timed_send)
