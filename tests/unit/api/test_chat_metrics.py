"""``smoke_chat_turns_total{outcome}``: every relayed turn is counted once, by how it ended."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from prometheus_client import REGISTRY

from smoke.api.sse import relay
from smoke.domain.models import ChatEvent


class StalledTurn:
    """A turn whose agent sent one delta and then nothing more."""

    def __init__(self) -> None:
        self.closed = False

    async def events(self) -> AsyncIterator[ChatEvent]:
        yield ChatEvent("delta", '{"text": "hi"}', "1")
        await asyncio.Event().wait()

    async def close(self) -> None:
        self.closed = True


def turns(outcome: str) -> float:
    return REGISTRY.get_sample_value("smoke_chat_turns_total", {"outcome": outcome}) or 0.0


async def test_a_client_leaving_mid_stream_is_counted_as_client_left() -> None:
    left, streaming = turns("client_left"), turns("streaming")
    turn = StalledTurn()
    stream = relay(turn, keepalive=15, turn_timeout=300)  # type: ignore[arg-type]
    await anext(stream)

    async def next_event() -> bytes:
        return await anext(stream)

    waiting = asyncio.create_task(next_event())
    await asyncio.sleep(0.01)

    waiting.cancel()  # what Litestar does when the client disconnects
    await asyncio.gather(waiting, return_exceptions=True)

    assert (turns("client_left") - left, turns("streaming") - streaming) == (1, 0)
    assert turn.closed


async def test_a_client_leaving_while_the_relay_waits_to_send_is_counted_as_client_left() -> None:
    left = turns("client_left")
    turn = StalledTurn()
    stream = relay(turn, keepalive=15, turn_timeout=300)  # type: ignore[arg-type]
    await anext(stream)

    await stream.aclose()  # the generator parked at its yield, closed

    assert turns("client_left") - left == 1
    assert turn.closed
