"""Servers the reliability tests run beside the code under test: a loopback server in a thread of its own."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from smoke.serving import serve_asgi

__all__ = ("ThreadedServer", "serve_in_thread")

T = TypeVar("T")


@dataclass
class ThreadedServer:
    """An ASGI app under uvicorn on 127.0.0.1, on an event loop in its own thread (for synchronous clients)."""

    url: str
    loop: asyncio.AbstractEventLoop

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run ``coroutine`` on the server's loop (where the app's container lives) and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)


@contextlib.contextmanager
def serve_in_thread(app: Any) -> Iterator[ThreadedServer]:
    loop = asyncio.new_event_loop()
    started = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        box["stop"] = asyncio.Event()
        try:
            async with serve_asgi(app) as url:
                box["url"] = url
                started.set()
                await box["stop"].wait()
        finally:
            started.set()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), name="reliability-server", daemon=True)
    thread.start()
    started.wait(30)
    if "url" not in box:
        thread.join(5)
        loop.close()
        raise RuntimeError("the server did not start")
    try:
        yield ThreadedServer(box["url"], loop)
    finally:
        loop.call_soon_threadsafe(box["stop"].set)
        thread.join(30)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
