"""The smoke API with proposed changes applied from outside ``src/``, to measure them before they are made.

``WHATIF`` (comma-separated) chooses the changes:

- ``app-scoped-status``: Smoke Status and Smoke Poll get their ``Provisioner`` from the APP scope, built from
  APP-scoped parts only (they use its reader and customer scope, never its session-bound ledger and unit of work).
  Stands for: give the read endpoints an APP-scoped read service instead of the REQUEST-scoped ``Provisioner``
  (which opens a SQLAlchemy ``AsyncSession`` and builds four session-bound stores on every request).
  Only Status and Poll are safe on this app: Smoke Provision would find no ledger.
- ``batched-relay``: Smoke Chat relays through ``batched_relay`` below instead of ``smoke.api.sse.relay``: one
  task per turn reads the agent's events into a queue, and the response sends everything that is queued when it
  gets to run, as one chunk (an event is never held back waiting for another). The current ``relay`` starts a task
  and an ``asyncio.wait`` per event and sends each event with its own ``send`` (one socket write each).
- ``agent-keepalive``: once a chat turn is over, the agent's response is read to its end (bounded: 0.5 s) before it
  is closed, so that httpx can put the connection back in its pool. Today ``HttpChatStream`` is closed right after
  the ``done`` event, before the end of the chunked body has been read, so httpx drops the connection and the next
  turn opens a new one to the agent.
- ``chat-timing``: no change, only instrumentation: for each Smoke Chat request, one JSON line on stderr with the
  time from the request reaching the app to the start of ``ChatRelay.open``, the instance read, the agent request
  (until its response headers) and from there to the first body chunk sent (used by profile_chat.py).
- ``gc-freeze``: after startup, ``gc.collect(); gc.freeze()``, so the ~150k objects that exist once the app is up
  are no longer scanned by every full collection (about 70 ms each here).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import itertools
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
from dishka import Provider, Scope, provide

import smoke.adapters.agent as agent_adapter
import smoke.api.controllers.smoke as smoke_controller
from smoke.adapters.agent import HttpAgentClient, HttpChatStream
from smoke.adapters.postgres.reads import AsyncpgInstanceReader
from smoke.api import create_app
from smoke.api.sse import KEEP_ALIVE, encode_event, error_event
from smoke.bootstrap import make_container
from smoke.domain.errors import AgentStreamBroken
from smoke.domain.models import ChatEvent, CustomerScope
from smoke.domain.ports import Catalog, Clock, InstanceReader, JobQueue
from smoke.domain.services import ChatRelay, ChatTurn, Provisioner
from smoke.observability import configure_logging
from smoke.settings import Settings
from smoke.sse import SseParser

WHATIF = {w.strip() for w in os.environ.get("WHATIF", "").split(",") if w.strip()}


class AppScopedProvisioner(Provider):
    @provide(scope=Scope.APP)
    def provisioner(
        self, scope: CustomerScope, reader: InstanceReader, catalog: Catalog, queue: JobQueue, clock: Clock
    ) -> Provisioner:
        return Provisioner(
            scope=scope,
            max_live_instances=10,
            ledger=None,
            catalog=catalog,  # type: ignore[arg-type]
            reader=reader,
            queue=queue,
            uow=None,
            clock=clock,  # type: ignore[arg-type]
        )


_END = b""


async def batched_relay(turn: ChatTurn, *, keepalive: float, turn_timeout: float) -> AsyncIterator[bytes]:
    """``smoke.api.sse.relay``'s contract (keep-alive comments, turn deadline, error events, prompt upstream close),
    with one reader task per turn and one send per batch of events already received."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + turn_timeout
    queue: asyncio.Queue[bytes] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for event in turn.events():
                queue.put_nowait(encode_event(event))
        except AgentStreamBroken as error:
            queue.put_nowait(error_event(str(error)))
        finally:
            queue.put_nowait(_END)

    reader = asyncio.ensure_future(pump())
    try:
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                yield error_event(f"the chat turn took longer than {turn_timeout:g} s")
                return
            try:
                async with asyncio.timeout(min(keepalive, remaining)):
                    item = await queue.get()
            except TimeoutError:
                if loop.time() < deadline:
                    yield KEEP_ALIVE
                continue
            batch = [item]
            while not queue.empty():
                batch.append(queue.get_nowait())
            ended = batch[-1] is _END
            if any(batch):
                yield b"".join(batch)
            if ended:
                return
    finally:
        with anyio.CancelScope(shield=True):
            reader.cancel()
            await asyncio.wait({reader})
            await turn.close()


class KeepAliveChatStream(HttpChatStream):
    """``HttpChatStream`` that reads the rest of the response (bounded) before closing it, to keep the connection."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(response)
        self._chunks = response.aiter_raw()

    async def __aiter__(self) -> AsyncIterator[ChatEvent]:
        parser = SseParser()
        try:
            async for chunk in self._chunks:
                for event in parser.feed(chunk):
                    yield ChatEvent(event.event, event.data, event.id)
        except (httpx.HTTPError, ValueError) as error:
            raise AgentStreamBroken(f"agent stream broken: {type(error).__name__}") from None

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(0.5):
                async for _ in self._chunks:
                    pass
        await self._response.aclose()


_MARKS: contextvars.ContextVar[dict[str, float]] = contextvars.ContextVar("chat_timing_marks")


def _mark(name: str) -> None:
    marks = _MARKS.get(None)
    if marks is not None:
        marks[name] = time.perf_counter()


def _instrument_chat(app: Any) -> Any:
    """Mark the phases of a Smoke Chat request (see ``chat-timing``); print them once the first event is sent."""
    open_turn, read_instance, open_chat = ChatRelay.open, AsyncpgInstanceReader.instance, HttpAgentClient.open_chat

    async def timed_open(self: ChatRelay, *args: Any) -> ChatTurn:
        _mark("open")
        return await open_turn(self, *args)

    async def timed_instance(self: AsyncpgInstanceReader, *args: Any) -> Any:
        found = await read_instance(self, *args)
        _mark("instance_read")
        return found

    async def timed_open_chat(self: HttpAgentClient, *args: Any) -> Any:
        _mark("agent_request")
        stream = await open_chat(self, *args)
        _mark("agent_headers")
        return stream

    ChatRelay.open = timed_open  # type: ignore[method-assign]
    AsyncpgInstanceReader.instance = timed_instance  # type: ignore[method-assign]
    HttpAgentClient.open_chat = timed_open_chat  # type: ignore[method-assign]

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/chat"):
            await app(scope, receive, send)
            return
        marks = {"start": time.perf_counter()}
        reset = _MARKS.set(marks)

        async def timed_send(message: dict[str, Any]) -> None:
            first = message["type"] == "http.response.body" and message.get("body") and "first_body" not in marks
            await send(message)
            if first:
                marks["first_body"] = time.perf_counter()
                order = ["start", "open", "instance_read", "agent_request", "agent_headers", "first_body"]
                if all(k in marks for k in order):
                    phases = {f"{a}->{b}": round((marks[b] - marks[a]) * 1e3, 3) for a, b in itertools.pairwise(order)}
                    print("CHAT-TIMING " + json.dumps(phases), file=sys.stderr, flush=True)

        try:
            await app(scope, receive, timed_send)
        finally:
            _MARKS.reset(reset)

    return wrapped


def _gc_freeze_after_startup(app: Any) -> Any:
    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return

        async def send_then_freeze(message: dict[str, Any]) -> None:
            if message["type"] == "lifespan.startup.complete":
                gc.collect()
                gc.freeze()
            await send(message)

        await app(scope, receive, send_then_freeze)

    return wrapped


settings = Settings.from_env(dotenv=None)
_secrets = (settings.ops_bearer_token, settings.hetzner_api_token, settings.agent_token_secret)
configure_logging(settings.log_level, settings.log_format, secrets=[s for s in _secrets if s])  # as the CLI does
overrides = [AppScopedProvisioner()] if "app-scoped-status" in WHATIF else []
if "agent-keepalive" in WHATIF:
    agent_adapter.HttpChatStream = KeepAliveChatStream  # type: ignore[misc]  # the name open_chat instantiates
if "batched-relay" in WHATIF:
    smoke_controller.relay = batched_relay  # type: ignore[assignment]  # the name the chat handler calls
app: Any = create_app(make_container(settings, *overrides))
if "gc-freeze" in WHATIF:
    app = _gc_freeze_after_startup(app)
if "chat-timing" in WHATIF:
    app = _instrument_chat(app)
