"""Relay a chat turn as Server-Sent Events: event by event, keep-alive comments, a turn deadline, prompt cleanup."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import anyio
import msgspec

from smoke.domain.errors import AgentStreamBroken
from smoke.domain.models import ChatEvent
from smoke.domain.services import ChatTurn
from smoke.observability import CHAT_STREAMS, CHAT_TURNS

__all__ = ("KEEP_ALIVE", "encode_event", "error_event", "relay")

KEEP_ALIVE = b": keep-alive\n\n"


def encode_event(event: ChatEvent) -> bytes:
    """One event in wire form, its fields as the agent sent them (multi-line data as several ``data:`` lines)."""
    lines = [f"event: {event.event}"]
    if event.id is not None:
        lines.append(f"id: {event.id}")
    lines.extend(f"data: {line}" for line in event.data.split("\n"))
    return ("\n".join(lines) + "\n\n").encode()


def error_event(detail: str) -> bytes:
    return b"event: error\ndata: " + msgspec.json.encode({"detail": detail}) + b"\n\n"


async def relay(turn: ChatTurn, *, keepalive: float, turn_timeout: float) -> AsyncIterator[bytes]:
    """The turn's events as SSE bytes, each sent as soon as it arrives.

    After ``keepalive`` seconds of upstream silence a comment goes out. A failure after streaming began, or a turn
    still running after ``turn_timeout`` seconds, ends the stream with an ``error`` event. However the stream ends
    (including the client going away, which cancels this generator), the upstream request is closed at once.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + turn_timeout
    events = turn.events()
    pending: asyncio.Future[ChatEvent] | None = None
    outcome = "client_left"
    CHAT_STREAMS.inc()
    try:
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                outcome = "timeout"
                yield error_event(f"the chat turn took longer than {turn_timeout:g} s")
                return
            if pending is None:
                pending = asyncio.ensure_future(anext(events))
            done, _ = await asyncio.wait({pending}, timeout=min(keepalive, remaining))
            if not done:
                if loop.time() < deadline:
                    yield KEEP_ALIVE
                continue
            finished, pending = pending, None
            try:
                event = finished.result()
            except StopAsyncIteration:
                outcome = "done"
                return
            except AgentStreamBroken as error:
                outcome = "broken"
                yield error_event(str(error))
                return
            yield encode_event(event)
    finally:
        # Litestar cancels this generator when the client leaves, through an anyio cancel scope that would cancel
        # every await below too: shield the cleanup so the upstream request really is closed now.
        with anyio.CancelScope(shield=True):
            if pending is not None:
                pending.cancel()
                await asyncio.wait({pending})
            await turn.close()
        CHAT_STREAMS.dec()
        CHAT_TURNS.labels(outcome).inc()
