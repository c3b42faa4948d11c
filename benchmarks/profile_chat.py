"""Where Smoke Chat's first-event latency goes, and what the HTTP client to the agent costs.

    uv run --group bench python benchmarks/profile_chat.py [--turns 40]

1. The smoke API on uvicorn with ``WHATIF=chat-timing`` (benchmarks/apps/smoke_api_whatif.py: instrumentation only)
   relays ``--turns`` one-word chat turns whose events come 50 ms apart (so nothing else competes with the first
   event); the API prints, per turn, the time from the request reaching the app to ``ChatRelay.open``, the instance
   read, the agent request until its response headers, and from there to the first body chunk sent. Medians.
2. The same simulated cloud answers ``GET /v1/locations`` 300 times (first 50 discarded) to an ``httpx.AsyncClient``
   and to a raw asyncio socket writing the same request: the client's own cost per request, which the relay pays
   once per turn in front of the agent's first event.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
import httpx
import uvloop

from benchmarks.bench_chat import _turn
from benchmarks.harness import (
    AGENT_TOKEN_SECRET,
    SIM_TOKEN,
    SMOKE,
    Stack,
    bench_database,
    cloud_env,
    log,
    median,
    provision_and_wait,
    quantile,
    simulator_server,
    table,
    whatif_api_server,
    worker_server,
    write_result,
)
from smoke.adapters.tokens import HmacTokenIssuer


async def _client_cost(base_url: str, requests: int = 300) -> dict[str, Any]:
    path = "/v1/locations"
    out: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {SIM_TOKEN}"}) as client:
        times = []
        for _ in range(requests):
            started = time.perf_counter()
            (await client.get(path)).raise_for_status()
            times.append((time.perf_counter() - started) * 1e3)
    out["httpx"] = times[50:]
    host, port = base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {SIM_TOKEN}\r\n\r\n".encode()
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length"))
        await reader.readexactly(length)
        times.append((time.perf_counter() - started) * 1e3)
    writer.close()
    out["raw socket"] = times[50:]
    return {k: {"p50_ms": round(median(v), 3), "p90_ms": round(quantile(v, 0.9), 3)} for k, v in out.items()}


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=40)
    parser.add_argument("--whatif", default="", help="more WHATIF changes to apply, e.g. agent-keepalive")
    args = parser.parse_args()
    token = secrets.token_urlsafe(18)
    async with bench_database("chatprof") as url, Stack() as stack:
        simulator = await stack.serve(simulator_server(token_delay_ms=50))
        api = await stack.serve(
            whatif_api_server(",".join(filter(None, ["chat-timing", args.whatif])), url, token, **cloud_env(simulator))
        )
        assert api.url is not None
        assert simulator.url is not None
        async with Stack() as worker_stack:
            await worker_stack.serve(worker_server(url, token, api.url, **cloud_env(simulator)))
            instance_id = await provision_and_wait(api.url, token)
        conn = await asyncpg.connect(url)
        server_id = await conn.fetchval("SELECT provider_server_id FROM instances WHERE id = $1", instance_id)
        await conn.close()
        agent_token = HmacTokenIssuer(AGENT_TOKEN_SECRET).agent_token(instance_id).token
        direct_url = f"{simulator.url}/agents/{server_id}/v1/chat"
        relay_url = f"{api.url}{SMOKE}/instances/{instance_id}/chat"
        direct, relayed = [], []
        async with httpx.AsyncClient(timeout=30) as client:
            for _ in range(3):  # warm-up
                await _turn(client, relay_url, token, "w w")
            for _ in range(args.turns):
                direct.append((await _turn(client, direct_url, agent_token, "w w"))["ttfe_ms"])
                relayed.append((await _turn(client, relay_url, token, "w w"))["ttfe_ms"])
        costs = await _client_cost(simulator.url)
        lines = [
            json.loads(line.split("CHAT-TIMING ", 1)[1])
            for line in api.tail(10_000).splitlines()
            if "CHAT-TIMING " in line
        ][3:]
    phases = {k: round(median(line[k] for line in lines), 3) for k in lines[0]}
    rows = [[k, v] for k, v in phases.items()]
    rows.append(["sum, request in app -> first event sent", round(sum(phases.values()), 3)])
    rows.append(["client: first event, direct to the agent (p50)", round(median(direct), 3)])
    rows.append(["client: first event, through Smoke Chat (p50)", round(median(relayed), 3)])
    rows.append(["client: added by the relay (difference of p50s)", round(median(relayed) - median(direct), 3)])
    text = table(["phase of a Smoke Chat turn (median of turns)", "ms"], rows)
    text += "\n\n" + table(
        ["client of GET /v1/locations on the simulated cloud", "p50 ms", "p90 ms"],
        [[k, v["p50_ms"], v["p90_ms"]] for k, v in costs.items()],
    )
    print(text)
    log(f"{len(lines)} turns timed")
    name = "profile_chat" + (f"_{args.whatif.replace(',', '_')}" if args.whatif else "")
    write_result(
        name,
        {
            "turns": args.turns,
            "whatif": args.whatif,
            "phases_ms": phases,
            "direct_ttfe_p50_ms": median(direct),
            "relay_ttfe_p50_ms": median(relayed),
            "http_client": costs,
            "table": text,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(uvloop.run(main()))
