"""Which HTTP client the relay should speak to agents with: httpx (as configured, and trimmed to httpcore) against
aiohttp, with a raw asyncio socket as the floor (a reference only: smoke ships no hand-written HTTP client).

    uv run --group bench python benchmarks/bench_agent_client.py [--rounds 5] [--turns 200]

The agent is ``benchmarks/apps/sse_agent.py`` on uvicorn (uvloop, httptools), a subprocess; the clients run in
this process on uvloop, one after the other in interleaved rounds, each on one kept-alive connection. Per client
and round: ``--turns`` one-event turns (``delta`` + ``done``) give the time from sending the request to its
response headers and to its first event, and the client's own CPU per turn (``time.process_time``: the agent is
another process); 10 turns of 2000 events give the rate at which the client reads a stream. What the relay pays
for a turn on its side is the client's CPU per turn plus its latency to the first event.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any, Protocol

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
import httpcore
import httpx
import msgspec
import uvloop

from benchmarks.harness import (
    Server,
    Stack,
    base_env,
    free_port,
    log,
    median,
    quantile,
    table,
    uvicorn_argv,
    write_result,
)

BODY = msgspec.json.encode({"message": "hello"})
HEADERS = {"Authorization": "Bearer agent-token", "Accept": "text/event-stream", "Content-Type": "application/json"}
LONG = 2000


class Client(Protocol):
    name: str

    async def turn(self, url: str) -> tuple[float, float, int]:
        """One turn: seconds to the response headers, to the first event, and the events counted."""

    async def aclose(self) -> None: ...


def _events(chunk: bytes) -> int:
    return chunk.count(b"\n\n")


class Httpx:
    """httpx as ``smoke.bootstrap`` configures it: ``build_request`` + ``send(stream=True)``, ``aiter_raw``."""

    name = "httpx 0.28 (AsyncClient, as configured)"

    def __init__(self) -> None:
        timeout = httpx.Timeout(connect=5.0, read=60.0, write=10.0, pool=5.0)
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=20)
        self.client = httpx.AsyncClient(timeout=timeout, limits=limits)

    async def turn(self, url: str) -> tuple[float, float, int]:
        started = time.perf_counter()
        request = self.client.build_request("POST", url, content=BODY, headers=HEADERS)
        response = await self.client.send(request, stream=True)
        headers = time.perf_counter()
        first, events = 0.0, 0
        try:
            async for chunk in response.aiter_raw():
                if not events and (n := _events(chunk)):
                    first = time.perf_counter()
                    events = n
                else:
                    events += _events(chunk)
        finally:
            await response.aclose()
        return headers - started, first - started, events

    async def aclose(self) -> None:
        await self.client.aclose()


class Httpcore:
    """httpx's own transport layer alone: ``httpcore.AsyncConnectionPool.stream``, no httpx request/response."""

    name = "httpcore 1.0 (AsyncConnectionPool)"

    def __init__(self) -> None:
        self.pool = httpcore.AsyncConnectionPool(max_connections=200, max_keepalive_connections=20)
        self.headers = [(k.encode(), v.encode()) for k, v in HEADERS.items()]

    async def turn(self, url: str) -> tuple[float, float, int]:
        started = time.perf_counter()
        headers = [*self.headers, (b"Content-Length", str(len(BODY)).encode())]
        async with self.pool.stream("POST", url, headers=headers, content=BODY) as response:
            got_headers = time.perf_counter()
            first, events = 0.0, 0
            async for chunk in response.aiter_stream():
                if not events and (n := _events(chunk)):
                    first = time.perf_counter()
                    events = n
                else:
                    events += _events(chunk)
        return got_headers - started, first - started, events

    async def aclose(self) -> None:
        await self.pool.aclose()


class Aiohttp:
    """aiohttp's ``ClientSession`` on a ``TCPConnector``, reading ``resp.content.iter_any()``."""

    name = f"aiohttp {aiohttp.__version__} (ClientSession)"

    def __init__(self) -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5.0, sock_read=60.0)
        connector = aiohttp.TCPConnector(limit=200, limit_per_host=0, keepalive_timeout=60.0)
        self.session = aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False)

    async def turn(self, url: str) -> tuple[float, float, int]:
        started = time.perf_counter()
        response = await self.session.post(url, data=BODY, headers=HEADERS)
        headers = time.perf_counter()
        first, events = 0.0, 0
        try:
            async for chunk in response.content.iter_any():
                if not events and (n := _events(chunk)):
                    first = time.perf_counter()
                    events = n
                else:
                    events += _events(chunk)
        finally:
            response.release()
        return headers - started, first - started, events

    async def aclose(self) -> None:
        await self.session.close()


class RawSocket:
    """The floor: one asyncio stream, the request written by hand, the chunked body read to its last chunk."""

    name = "raw asyncio socket (reference only)"

    def __init__(self) -> None:
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def turn(self, url: str) -> tuple[float, float, int]:
        rest = url.removeprefix("http://")
        hostport, _, path = rest.partition("/")
        host, _, port = hostport.partition(":")
        started = time.perf_counter()
        if self.streams is None:
            self.streams = await asyncio.open_connection(host, int(port))
        reader, writer = self.streams
        head = f"POST /{path} HTTP/1.1\r\nHost: {hostport}\r\nContent-Length: {len(BODY)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in HEADERS.items()) + "\r\n"
        writer.write(head.encode() + BODY)
        buffer = await reader.readuntil(b"\r\n\r\n")
        headers = time.perf_counter()
        buffer = b""
        first = 0.0
        while not buffer.endswith(b"\r\n0\r\n\r\n") and not buffer.startswith(b"0\r\n\r\n"):
            chunk = await reader.read(65536)
            if not chunk:
                raise ConnectionError("closed")
            buffer += chunk
            if not first and _events(chunk):
                first = time.perf_counter()
        events = buffer.count(b"\n\n")  # the chunk framing (CRLF) never makes a blank line of LFs
        return headers - started, first - started, events

    async def aclose(self) -> None:
        if self.streams is not None:
            self.streams[1].close()


async def _measure(client: Client, url: str, turns: int) -> dict[str, Any]:
    for _ in range(20):  # warm-up: connection, caches
        await client.turn(url + "?n=1")
    to_headers, to_first = [], []
    cpu0 = time.process_time()
    for _ in range(turns):
        h, f, events = await client.turn(url + "?n=1")
        assert events == 2, events
        to_headers.append(h * 1e3)
        to_first.append(f * 1e3)
    cpu = time.process_time() - cpu0
    long_rates = []
    for _ in range(10):
        started = time.perf_counter()
        _h, _f, events = await client.turn(url + f"?n={LONG}")
        assert events == LONG + 1, events
        long_rates.append(events / (time.perf_counter() - started))
    return {
        "headers_p50_ms": round(median(to_headers), 3),
        "first_event_p50_ms": round(median(to_first), 3),
        "first_event_p90_ms": round(quantile(to_first, 0.9), 3),
        "cpu_us_per_turn": round(1e6 * cpu / turns, 1),
        "events_per_s": round(median(long_rates)),
    }


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--turns", type=int, default=200)
    args = parser.parse_args()
    port = free_port()
    agent = Server("sse-agent", uvicorn_argv("benchmarks.apps.sse_agent:app", port), base_env())
    agent.url, agent.ready_path = f"http://127.0.0.1:{port}", "/v1/chat"
    url = f"http://127.0.0.1:{port}/v1/chat"
    factories = [Httpx, Httpcore, Aiohttp, RawSocket]
    results: dict[str, list[dict[str, Any]]] = {f.name: [] for f in factories}
    async with Stack() as stack:
        await stack.serve(agent)
        for rnd in range(args.rounds):
            order = factories[rnd % len(factories) :] + factories[: rnd % len(factories)]
            for factory in order:
                client = factory()
                try:
                    result = await _measure(client, url, args.turns)
                finally:
                    await client.aclose()
                results[factory.name].append(result)
                log(f"round {rnd + 1} {factory.name}: {result}")
    rows, summary = [], {}
    for name, runs in results.items():
        s = {key: median(r[key] for r in runs) for key in runs[0]}
        firsts = [r["first_event_p50_ms"] for r in runs]
        s["first_event_p50_range_ms"] = [min(firsts), max(firsts)]
        summary[name] = s
        rows.append(
            [
                name,
                f"{s['headers_p50_ms']:.3f}",
                f"{s['first_event_p50_ms']:.3f} ({min(firsts):.3f}-{max(firsts):.3f})",
                f"{s['first_event_p90_ms']:.3f}",
                f"{s['cpu_us_per_turn']:.0f}",
                f"{s['events_per_s']:.0f}",
            ]
        )
    text = table(
        [
            "client",
            "request → headers ms p50",
            "request → first event ms p50 (range of rounds)",
            "first event ms p90",
            "client CPU µs per turn",
            f"events/s reading a {LONG}-event turn",
        ],
        rows,
    )
    print(text)
    write_result("agent_client", {"rounds": args.rounds, "turns": args.turns, "summary": summary, "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(uvloop.run(main()))
