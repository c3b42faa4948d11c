"""What a standalone worker serves beside its jobs, for Prometheus and for its supervisor: ``/metrics``, ``/healthz``.

A bare ASGI app, not a Litestar one: two fixed routes need no framework, and the worker process stays lean.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import make_asgi_app

__all__ = ("worker_metrics_app",)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def worker_metrics_app(alive: Callable[[], bool]) -> ASGIApp:
    """``GET /metrics``: this process's metrics (the job counters and histograms); ``GET /healthz``: 200 while
    ``alive()`` (the worker still runs its loop), else 503; anything else 404."""
    prometheus = make_asgi_app()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/metrics":
            await prometheus(scope, receive, send)
        elif scope["path"] == "/healthz":
            healthy = alive()
            await _json(send, 200 if healthy else 503, b'{"status":"ok"}' if healthy else b'{"status":"stopped"}')
        else:
            await _json(send, 404, b'{"detail":"Not Found"}')

    return app


async def _json(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
