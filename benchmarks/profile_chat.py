"""Where Smoke Chat's first-event latency goes, phase by phase, on a kept-alive connection (or a fresh one).

    uv run --group bench python benchmarks/profile_chat.py [--turns 60] [--fresh]

The smoke API with its chat phases timed (``benchmarks/apps/smoke_api_timed.py``: instrumentation, no change) on
uvicorn relays ``--turns`` one-word turns from the simulated cloud's agent, each also sent straight to the agent,
interleaved. The API prints, per turn, when each phase ended (ms from the request reaching the app); this prints
their medians, and the client's first-event time through the relay and directly.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
import httpx
import uvloop

from benchmarks.bench_chat import _turn
from benchmarks.harness import (
    AGENT_TOKEN_SECRET,
    SMOKE,
    Server,
    Stack,
    api_server,
    bench_database,
    cloud_env,
    free_port,
    median,
    provision_and_wait,
    simulator_server,
    smoke_env,
    table,
    uvicorn_argv,
    worker_server,
    write_result,
)
from smoke.adapters.tokens import HmacTokenIssuer


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=60)
    parser.add_argument("--fresh", action="store_true", help="a new connection for every turn (no keep-alive)")
    args = parser.parse_args()
    token = secrets.token_urlsafe(18)
    async with bench_database("profile_chat") as url, Stack() as stack:
        simulator = await stack.serve(simulator_server())
        api = await stack.serve(api_server("smoke-serve", url, token, **cloud_env(simulator)))
        assert api.url is not None
        port = free_port()
        env = smoke_env(url, token, PUBLIC_URL=api.url, **cloud_env(simulator))
        timed_url = f"http://127.0.0.1:{port}"
        argv = uvicorn_argv("benchmarks.apps.smoke_api_timed:app", port)
        timed = await stack.serve(Server("smoke-api-timed", argv, env, url=timed_url, ready_path="/healthz"))
        async with Stack() as workers:
            await workers.serve(worker_server(url, token, api.url, **cloud_env(simulator)))
            instance_id = await provision_and_wait(api.url, token)
        conn = await asyncpg.connect(url)
        server_id = await conn.fetchval("SELECT provider_server_id FROM instances WHERE id = $1", instance_id)
        await conn.close()
        agent_token = HmacTokenIssuer(AGENT_TOKEN_SECRET).agent_token(instance_id).token
        relay = (f"{timed_url}{SMOKE}/instances/{instance_id}/chat", token)
        direct = (f"{simulator.url}/agents/{server_id}/v1/chat", agent_token)
        client_ms: dict[str, list[float]] = {"relay": [], "direct": []}
        relayed: list[dict[str, Any]] = []
        limits = httpx.Limits(max_keepalive_connections=0 if args.fresh else 10)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            for _ in range(10):
                await _turn(client, *relay, "hello")
                await _turn(client, *direct, "hello")
            for _ in range(args.turns):
                relayed.append(await _turn(client, *relay, "hello"))
                client_ms["relay"].append(relayed[-1]["ttfe_ms"])
                client_ms["direct"].append((await _turn(client, *direct, "hello"))["ttfe_ms"])
        lines = [json.loads(x) for x in timed.log_path.read_text().splitlines() if x.startswith("{")][10:]
    names = [k for k in lines[-1] if k != "clock"]  # "clock": the absolute start, to match the client's (hops)
    phases: dict[str, Any] = {k: round(median(line[k] for line in lines if k in line), 3) for k in names}
    rows = [[name, ms] for name, ms in sorted(phases.items(), key=lambda kv: kv[1])]
    into_app = [(line["clock"] - turn["started"]) * 1e3 for line, turn in zip(lines, relayed, strict=True)]
    out_of_app = [
        turn["ttfe_ms"] - (line["clock"] - turn["started"]) * 1e3 - line["first_chunk_sent"]
        for line, turn in zip(lines, relayed, strict=True)
    ]
    rows += [
        ["client: request sent → app started (p50)", round(median(into_app), 3)],
        ["client: first chunk handed to uvicorn → first event read (p50)", round(median(out_of_app), 3)],
    ]
    rows += [[f"client: first event, {k} (p50)", round(median(v), 3)] for k, v in client_ms.items()]
    text = table(["phase ended (ms after the request reached the app), median over turns", "ms"], rows)
    print(text)
    name = "profile_chat_fresh" if args.fresh else "profile_chat"
    write_result(name, {"turns": args.turns, "phases_ms": phases, "client_first_event_ms": client_ms})
    return 0


if __name__ == "__main__":
    raise SystemExit(uvloop.run(main()))
