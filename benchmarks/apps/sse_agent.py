"""A bare ASGI agent for the client benchmark: ``POST /v1/chat`` answers ``N`` delta events and ``done``.

``N`` is the query's ``n`` (default 1). Each event is its own ``send``, as an agent streaming tokens writes them;
the body is read and dropped. Serve it with ``uvicorn benchmarks.apps.sse_agent:app`` (uvloop, httptools).
"""

from __future__ import annotations

from typing import Any

_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")],
}
_DELTA = b'event: delta\ndata: {"text":"w"}\n\n'
_DONE = b'event: done\ndata: {"usage":{"input_tokens":1,"output_tokens":1}}\n\n'


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    query = scope.get("query_string", b"")
    count = int(query.partition(b"n=")[2] or 1) if b"n=" in query else 1
    await send(_START)
    for _ in range(count):
        await send({"type": "http.response.body", "body": _DELTA, "more_body": True})
    await send({"type": "http.response.body", "body": _DONE, "more_body": False})
