"""Relay a chat turn as Server-Sent Events: event by event, keep-alive comments, a turn deadline, prompt cleanup."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import anyio
import msgspec

from smoke.domain.errors import AgentStreamBroken
from smoke.domain.models import ChatEvent
from smoke.domain.services import ChatTurn
from smoke.domain.services.chat_relay import DONE
from smoke.observability import CHAT_STREAMS, CHAT_TURNS

__all__ = ("KEEP_ALIVE", "encode_event", "error_event", "relay")

KEEP_ALIVE = b": keep-alive\n\n"


def encode_event(event: ChatEvent) -> bytes:
    """One event in wire form, its fields as the agent sent them (multi-line data as several ``data:`` lines)."""
    lines = [f"event: {event.event}", "id" if event.id is None else f"id: {event.id}"]  # bare ``id`` resets it
    lines.extend(f"data: {line}" for line in event.data.split("\n"))
    return ("\n".join(lines) + "\n\n").encode()


def error_event(detail: str) -> bytes:
    return b"event: error\ndata: " + msgspec.json.encode({"detail": detail}) + b"\n\n"


async def relay(turn: ChatTurn, *, keepalive: float, turn_timeout: float) -> AsyncGenerator[bytes, None]:
    """The turn's events as SSE bytes, sent as soon as they arrive (those that arrived together, together).

    After ``keepalive`` seconds of upstream silence a comment goes out. A failure after streaming began, or a turn
    still running after ``turn_timeout`` seconds, ends the stream with an ``error`` event. However the stream ends
    (including the client going away, which cancels this generator), the upstream request is closed at once.

    The turn is counted by how it ended: ``done``, ``broken``, ``timeout``, or ``client_left`` when the client went
    away before any of those (at whatever point of the stream).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + turn_timeout
    arrived: asyncio.Queue[ChatEvent | AgentStreamBroken | None] = asyncio.Queue()
    reader = asyncio.create_task(_read(turn, arrived))
    outcome = "client_left"
    CHAT_STREAMS.inc()
    try:
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                outcome = "timeout"
                yield error_event(f"the chat turn took longer than {turn_timeout:g} s")
                return
            try:
                async with asyncio.timeout(min(keepalive, remaining)):
                    first = await arrived.get()
            except TimeoutError:
                if loop.time() < deadline:
                    yield KEEP_ALIVE
                continue
            chunk, state = _encode_batch([first, *_drain(arrived)])
            if chunk:
                yield chunk
            if state != "streaming":
                outcome = state
                return
    finally:
        # Litestar cancels this generator when the client leaves, through an anyio cancel scope that would cancel
        # every await below too: shield the cleanup so the upstream request really is closed now.
        with anyio.CancelScope(shield=True):
            if outcome == "done":
                await asyncio.wait({reader}, timeout=0.5)  # let it read the agent's body to its end: reusable
            reader.cancel()
            await asyncio.wait({reader})
            await turn.close()
        CHAT_STREAMS.dec()
        CHAT_TURNS.labels(outcome).inc()


async def _read(turn: ChatTurn, arrived: asyncio.Queue[ChatEvent | AgentStreamBroken | None]) -> None:
    """Move the turn's events to ``arrived`` as they come; ``None`` once it ended, or the error that broke it."""
    try:
        async for event in turn.events():
            arrived.put_nowait(event)
    except AgentStreamBroken as error:
        arrived.put_nowait(error)
    else:
        arrived.put_nowait(None)


def _drain(arrived: asyncio.Queue[ChatEvent | AgentStreamBroken | None]) -> list[ChatEvent | AgentStreamBroken | None]:
    items = []
    while not arrived.empty():
        items.append(arrived.get_nowait())
    return items


def _encode_batch(items: list[ChatEvent | AgentStreamBroken | None]) -> tuple[bytes, str]:
    """The wire bytes of what arrived, and how the turn stands: ``streaming``, ``done`` or ``broken``."""
    chunk = bytearray()
    for item in items:
        if item is None:
            return bytes(chunk), "done"
        if isinstance(item, AgentStreamBroken):
            return bytes(chunk + error_event(str(item))), "broken"
        chunk += encode_event(item)
        if item.event == DONE:
            return bytes(chunk), "done"
    return bytes(chunk), "streaming"
