"""Serve an ASGI app with uvicorn inside the running event loop, on a loopback port or any other.

uvicorn has no limit on how long a request's headers may take to arrive (encode/uvicorn#157 proposed one, never
built): its keep-alive timer runs only between requests and every byte received cancels it, so a client sending its
headers a byte at a time (slowloris) holds a connection for as long as it likes. ``serve_asgi`` serves with
uvicorn's own httptools protocol, extended with that limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Generator
from typing import Any, ClassVar, Final, Literal

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ("DEFAULT_HEADER_TIMEOUT_SECONDS", "HeaderTimeoutProtocol", "free_port", "serve_asgi")

DEFAULT_HEADER_TIMEOUT_SECONDS: Final = 10.0
_TIMED_OUT_BODY: Final = b'{"detail":"Request headers not complete in time"}'
_TIMED_OUT: Final = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: " + str(len(_TIMED_OUT_BODY)).encode() + b"\r\n\r\n" + _TIMED_OUT_BODY
)
logger = logging.getLogger("smoke.serving")


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with ``header_timeout`` seconds for a request's headers to arrive whole.

    The clock starts when the connection is made (for its first request) or at the first byte of each later request,
    and stops when the headers are complete: a body, a long response or a stream is never timed by it. A connection
    whose headers are late gets a 408 and is closed; no task is started for it, so it keeps nothing busy. Should a
    client pipeline a late request behind a response still being sent, that response finishes and the connection
    then closes.
    """

    header_timeout: ClassVar[float] = DEFAULT_HEADER_TIMEOUT_SECONDS
    _header_timer: asyncio.TimerHandle | None = None

    @classmethod
    def limited_to(cls, seconds: float) -> type[HeaderTimeoutProtocol]:
        """This protocol with another limit (uvicorn builds one protocol object per connection from a class)."""
        return type(cls.__name__, (cls,), {"header_timeout": seconds})

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_header_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_timer is None:
            self._start_header_timer()

    def on_headers_complete(self) -> None:
        self._stop_header_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)

    def _start_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_timed_out)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_timed_out(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False
            return
        logger.debug("closing a connection from %s: headers not complete within %g s", self.client, self.header_timeout)
        self.transport.write(_TIMED_OUT)
        self.transport.close()


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its host process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def serve_asgi(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    lifespan: Literal["auto", "on", "off"] = "on",
    header_timeout: float = DEFAULT_HEADER_TIMEOUT_SECONDS,
) -> AsyncIterator[str]:
    """Run ``app`` under uvicorn as a task of the current loop; yield its base URL; stop it on exit.

    Port 0 picks a free port. The server runs without signal handlers, so the caller decides when it stops. A
    connection whose request headers take longer than ``header_timeout`` seconds is answered 408 and closed.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # asyncio sets TCP_NODELAY only on sockets created with IPPROTO_TCP: without it every small response waits
    # ~40 ms for a delayed ACK.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        lifespan=lifespan,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
        loop="none",
        http=HeaderTimeoutProtocol.limited_to(header_timeout),
    )
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn stopped before it started")
            await asyncio.sleep(0.01)
        yield f"http://{host}:{bound_port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()
