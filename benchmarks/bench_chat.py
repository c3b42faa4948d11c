"""Figure 2, the chat relay: first-event latency and events/s through Smoke Chat versus straight to the agent.

One instance is provisioned for real (API + worker + simulated cloud with zero action and boot delays, all
subprocesses); then the worker is stopped and the targets are called in interleaved runs from one
``httpx.AsyncClient`` (keep-alive, uvloop) that counts events by splitting the raw bytes at blank lines (no SSE
parser in the client):

- ``direct``: ``POST {simulator}/agents/{server_id}/v1/chat`` with the instance's agent token;
- ``relay / <server>``: ``POST /internal/v1/smoke/instances/{id}/chat`` on the smoke API served by ``smoke serve``
  as shipped, by uvicorn (uvloop, httptools) and by granian;
- ``relay / uvicorn, what-if: ...``: the same on uvicorn with proposed changes applied from outside src/
  (``benchmarks/apps/smoke_api_whatif.py``: ``batched-relay``, ``agent-keepalive``, both), to measure them before
  they are made.

Kinds of run, per target and round: ``fast`` (2000 one-letter words, no pause between events: 2000 ``delta`` +
``done`` = 2001 events) gives events/s and a time to first event; ``one`` (one word: ``delta`` + ``done``) gives the
first-event latency of a turn; ``slow`` (10 words 50 ms apart, fewer runs) shows the relay does not buffer. Each
turn ends with the agent reporting its usage to the API before ``done``, on every path alike.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import asyncpg
import httpx

from benchmarks.harness import (
    AGENT_TOKEN_SECRET,
    SMOKE,
    Server,
    Stack,
    api_server,
    bench_database,
    cloud_env,
    cpu_seconds,
    loadavg,
    log,
    median,
    provision_and_wait,
    quantile,
    simulator_server,
    spread,
    table,
    whatif_api_server,
    worker_server,
)
from smoke.adapters.tokens import HmacTokenIssuer

FAST_WORDS = 2000
SLOW_WORDS = 10
SLOW_DELAY_MS = 50
RELAY_SERVERS = ("smoke-serve", "uvicorn", "granian")
# Proposed changes applied from outside src/ (benchmarks/apps/smoke_api_whatif.py), served like ``relay / uvicorn``.
WHATIFS = {
    "uvicorn, what-if: batched relay": "batched-relay",
    "uvicorn, what-if: agent keep-alive": "agent-keepalive",
    "uvicorn, what-if: both": "batched-relay,agent-keepalive",
}


async def _turn(client: httpx.AsyncClient, url: str, token: str, message: str) -> dict[str, Any]:
    """One chat turn: time to the first complete event, time to the end, number of events, the last event."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    started = time.perf_counter()
    first: float | None = None
    events, buffer = 0, b""
    async with client.stream("POST", url, json={"message": message}, headers=headers) as response:
        if response.status_code != 200:
            body = await response.aread()
            raise RuntimeError(f"{url}: HTTP {response.status_code} {body[:200]!r}")
        async for chunk in response.aiter_raw():
            buffer += chunk
            parts = buffer.split(b"\n\n")
            buffer = parts.pop()
            complete = [p for p in parts if p and not p.startswith(b":")]
            if complete and first is None:
                first = time.perf_counter()
            events += len(complete)
            last = complete[-1] if complete else None
            if last is not None:
                last_event = last
    ended = time.perf_counter()
    kind = last_event.split(b"\n", 1)[0].removeprefix(b"event: ").decode() if events else ""
    assert first is not None
    return {
        "ttfe_ms": round((first - started) * 1e3, 3),
        "total_ms": round((ended - started) * 1e3, 3),
        "events": events,
        "last": kind,
    }


async def run(runs: int = 20, slow_runs: int = 10, whatif: bool = True) -> dict[str, Any]:
    token = secrets.token_urlsafe(18)
    load = {"before": loadavg()}
    fast_message = " ".join(["a"] * FAST_WORDS)
    slow_message = " ".join(["w"] * SLOW_WORDS)
    async with bench_database("chat") as url, Stack() as stack:
        simulator = await stack.serve(simulator_server(token_delay_ms=0))
        apis: dict[str, Server] = {}
        for kind in RELAY_SERVERS:
            apis[kind] = await stack.serve(api_server(kind, url, token, **cloud_env(simulator)))
        for label, changes in WHATIFS.items() if whatif else ():
            apis[label] = await stack.serve(whatif_api_server(changes, url, token, **cloud_env(simulator)))
        primary = apis["smoke-serve"]
        assert primary.url is not None
        assert simulator.url is not None
        async with Stack() as worker_stack:  # the worker only for the provisioning, then gone
            await worker_stack.serve(worker_server(url, token, primary.url, **cloud_env(simulator)))
            instance_id = await provision_and_wait(primary.url, token)
        conn = await asyncpg.connect(url)
        server_id = await conn.fetchval("SELECT provider_server_id FROM instances WHERE id = $1", instance_id)
        await conn.close()
        agent_token = HmacTokenIssuer(AGENT_TOKEN_SECRET).agent_token(instance_id).token
        targets: dict[str, tuple[str, str, Server]] = {
            "direct": (f"{simulator.url}/agents/{server_id}/v1/chat", agent_token, simulator),
        }
        for kind, api in apis.items():
            targets[f"relay / {kind}"] = (f"{api.url}{SMOKE}/instances/{instance_id}/chat", token, api)
        results: dict[str, dict[str, list[dict[str, Any]]]] = {
            name: {"fast": [], "one": [], "slow": []} for name in targets
        }
        names = list(targets)
        limits = httpx.Limits(max_connections=10, max_keepalive_connections=10)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            for target, tok, _ in targets.values():  # warm-up: one turn of each kind, discarded
                await _turn(client, target, tok, fast_message)
                await _turn(client, target, tok, "hello")
            for i in range(runs):
                order = names[i % len(names) :] + names[: i % len(names)]
                for name in order:
                    target, tok, server = targets[name]
                    pids = server.pids()
                    cpu0 = cpu_seconds(pids)
                    fast = await _turn(client, target, tok, fast_message)
                    fast["server_cpu_us_per_event"] = round(
                        1e6 * (cpu_seconds(pids) - cpu0) / max(fast["events"], 1), 1
                    )
                    results[name]["fast"].append(fast)
                for name in order:
                    target, tok, _ = targets[name]
                    results[name]["one"].append(await _turn(client, target, tok, "hello"))
            async with httpx.AsyncClient(base_url=simulator.url, timeout=10) as sim:
                (await sim.put("/_sim/faults", json={"agent": {"token_delay_ms": SLOW_DELAY_MS}})).raise_for_status()
                for _ in range(slow_runs):
                    for name, (target, tok, _) in targets.items():
                        results[name]["slow"].append(await _turn(client, target, tok, slow_message))
                (await sim.put("/_sim/faults", json={"agent": {"token_delay_ms": 0}})).raise_for_status()
        for name, kinds in results.items():
            bad = [r for k in kinds.values() for r in k if r["last"] != "done"]
            counts = {r["events"] for r in kinds["fast"]}
            log(f"{name}: fast events {counts}, turns not ending in done: {len(bad)}")
    load["after"] = loadavg()
    return {
        "instance_id": str(instance_id),
        "results": results,
        "load": load,
        "params": {
            "runs": runs,
            "slow_runs": slow_runs,
            "fast_words": FAST_WORDS,
            "slow_words": SLOW_WORDS,
            "slow_delay_ms": SLOW_DELAY_MS,
        },
    }


def summarize(result: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    results = result["results"]
    direct = results["direct"]
    summary: dict[str, Any] = {}
    rows = []
    for name, kinds in results.items():
        fast, one, slow = kinds["fast"], kinds["one"], kinds["slow"]
        eps = [r["events"] / (r["total_ms"] / 1e3) for r in fast]
        ratios = [
            (r["events"] / r["total_ms"]) / (d["events"] / d["total_ms"])
            for r, d in zip(fast, direct["fast"], strict=True)
        ]
        added_one = [r["ttfe_ms"] - d["ttfe_ms"] for r, d in zip(one, direct["one"], strict=True)]
        s = {
            "events_per_s_median": round(median(eps)),
            "ratio_to_direct_median": round(median(ratios), 2),
            "ratio_to_direct_range": [round(min(ratios), 2), round(max(ratios), 2)],
            "ttfe_one_p50_ms": round(median(r["ttfe_ms"] for r in one), 2),
            "ttfe_one_p90_ms": round(quantile([r["ttfe_ms"] for r in one], 0.9), 2),
            "added_ttfe_p50_ms": round(
                median(r["ttfe_ms"] for r in one) - median(d["ttfe_ms"] for d in direct["one"]), 2
            ),
            "added_ttfe_paired_median_ms": round(median(added_one), 2),
            "ttfe_fast_p50_ms": round(median(r["ttfe_ms"] for r in fast), 2),
            "one_total_p50_ms": round(median(r["total_ms"] for r in one), 2),
            "slow_total_p50_ms": round(median(r["total_ms"] for r in slow), 1) if slow else None,
            "slow_ttfe_p50_ms": round(median(r["ttfe_ms"] for r in slow), 2) if slow else None,
            "server_cpu_us_per_event": round(median(r["server_cpu_us_per_event"] for r in fast), 1),
            "events_fast": sorted({r["events"] for r in fast}),
            "not_done": sum(1 for k in kinds.values() for r in k if r["last"] != "done"),
        }
        summary[name] = s
        rows.append(
            [
                name,
                s["events_per_s_median"],
                f"{s['ratio_to_direct_median']:.2f} ({spread(ratios)})",
                s["ttfe_one_p50_ms"],
                f"{s['added_ttfe_p50_ms']:+.2f}",
                s["ttfe_one_p90_ms"],
                s["ttfe_fast_p50_ms"],
                s["slow_ttfe_p50_ms"],
                s["slow_total_p50_ms"],
                s["server_cpu_us_per_event"],
            ]
        )
    text = table(
        [
            "path",
            "events/s (median)",
            "ratio to direct (range)",
            "first event ms p50 (1-word turn)",
            "added vs direct ms",
            "first event ms p90",
            "first event ms p50 (2000-event turn)",
            f"first event ms ({SLOW_WORDS}x{SLOW_DELAY_MS} ms turn)",
            f"total ms ({SLOW_WORDS}x{SLOW_DELAY_MS} ms turn)",
            "server CPU µs/event",
        ],
        rows,
    )
    summary["verdicts"] = {
        name: {
            "added_ttfe_target_3ms": s["added_ttfe_p50_ms"] <= 3.0,
            "throughput_target_0.6": s["ratio_to_direct_median"] >= 0.6,
        }
        for name, s in summary.items()
        if name != "direct"
    }
    return text, summary
