"""Figure 2, the chat relay: first-event latency and events/s through Smoke Chat versus straight to the agent.

One instance is provisioned for real (API + worker + simulated cloud with zero action and boot delays, all
subprocesses); then the worker is stopped and the targets are called in interleaved runs. The client counts events
by splitting the raw bytes at blank lines (no SSE parser in the client), on uvloop. Targets:

- ``direct``: ``POST {simulator}/agents/{server_id}/v1/chat`` with the instance's agent token;
- ``relay / smoke-serve``: ``POST /internal/v1/smoke/instances/{id}/chat`` on ``smoke serve`` (this tree);
- ``relay / smoke-serve at main``: the same on ``smoke serve`` as it was on main, before this round's changes.

Kinds of run, per target and round: ``fast`` (2000 one-letter words, no pause between events: 2000 ``delta`` +
``done`` = 2001 events) gives events/s; ``one`` (one word: ``delta`` + ``done``) gives the first-event latency of
a turn on a kept-alive connection (one ``httpx.AsyncClient`` for every turn), ``fresh`` the same when each turn
opens its own connection and closes it afterwards (a client without keep-alive, as ``smoke check`` and most CI
clients behave); ``slow`` (10 words 50 ms apart, fewer runs) shows the relay does not buffer. Each turn ends with
the agent reporting its usage to the API before ``done``, on every path alike.
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
    baseline_source,
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
    worker_server,
)
from smoke.adapters.tokens import HmacTokenIssuer

FAST_WORDS = 2000
SLOW_WORDS = 10
SLOW_DELAY_MS = 50
SHORT_TURNS = 3  # one-word turns per target and round, kept-alive and fresh each
RELAYS = {"smoke-serve": False, "smoke-serve at main": True}  # name: at_baseline


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


async def run(runs: int = 20, slow_runs: int = 10) -> dict[str, Any]:
    token = secrets.token_urlsafe(18)
    load = {"before": loadavg()}
    fast_message = " ".join(["a"] * FAST_WORDS)
    slow_message = " ".join(["w"] * SLOW_WORDS)
    async with bench_database("chat") as url, Stack() as stack:
        simulator = await stack.serve(simulator_server(token_delay_ms=0))
        apis: dict[str, Server] = {}
        for name, at_baseline in RELAYS.items():
            server = api_server("smoke-serve", url, token, at_baseline=at_baseline, **cloud_env(simulator))
            apis[name] = await stack.serve(server)
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
        for name, api in apis.items():
            targets[f"relay / {name}"] = (f"{api.url}{SMOKE}/instances/{instance_id}/chat", token, api)
        results: dict[str, dict[str, list[dict[str, Any]]]] = {
            name: {"fast": [], "one": [], "fresh": [], "slow": []} for name in targets
        }
        names = list(targets)
        kept = httpx.Limits(max_connections=10, max_keepalive_connections=10)
        no_keepalive = httpx.Limits(max_connections=10, max_keepalive_connections=0)
        async with (
            httpx.AsyncClient(timeout=30, limits=kept) as client,
            httpx.AsyncClient(timeout=30, limits=no_keepalive) as fresh_client,
        ):
            for target, tok, _ in targets.values():  # warm-up: one turn of each kind, discarded
                await _turn(client, target, tok, fast_message)
                await _turn(client, target, tok, "hello")
                await _turn(fresh_client, target, tok, "hello")
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
                for _ in range(SHORT_TURNS):  # each target in turn, so that a pair is measured side by side
                    for name in order:
                        target, tok, _ = targets[name]
                        results[name]["one"].append(await _turn(client, target, tok, "hello"))
                    for name in order:
                        target, tok, _ = targets[name]
                        results[name]["fresh"].append(await _turn(fresh_client, target, tok, "hello"))
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
        "main_commit": baseline_source()[0],
        "results": results,
        "load": load,
        "params": {
            "runs": runs,
            "short_turns_per_run": SHORT_TURNS,
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
        fast, one, fresh, slow = kinds["fast"], kinds["one"], kinds["fresh"], kinds["slow"]
        eps = [r["events"] / (r["total_ms"] / 1e3) for r in fast]
        ratios = [
            (r["events"] / r["total_ms"]) / (d["events"] / d["total_ms"])
            for r, d in zip(fast, direct["fast"], strict=True)
        ]
        added_one = [r["ttfe_ms"] - d["ttfe_ms"] for r, d in zip(one, direct["one"], strict=True)]
        added_fresh = [r["ttfe_ms"] - d["ttfe_ms"] for r, d in zip(fresh, direct["fresh"], strict=True)]
        s = {
            "events_per_s_median": round(median(eps)),
            "ratio_to_direct_median": round(median(ratios), 2),
            "ratio_to_direct_range": [round(min(ratios), 2), round(max(ratios), 2)],
            "ttfe_kept_p50_ms": round(median(r["ttfe_ms"] for r in one), 2),
            "ttfe_kept_p90_ms": round(quantile([r["ttfe_ms"] for r in one], 0.9), 2),
            "added_kept_p50_ms": round(
                median(r["ttfe_ms"] for r in one) - median(d["ttfe_ms"] for d in direct["one"]), 2
            ),
            "added_kept_paired_median_ms": round(median(added_one), 2),
            "added_kept_paired_range_ms": [round(quantile(added_one, 0.1), 2), round(quantile(added_one, 0.9), 2)],
            "ttfe_fresh_p50_ms": round(median(r["ttfe_ms"] for r in fresh), 2),
            "ttfe_fresh_p90_ms": round(quantile([r["ttfe_ms"] for r in fresh], 0.9), 2),
            "added_fresh_p50_ms": round(
                median(r["ttfe_ms"] for r in fresh) - median(d["ttfe_ms"] for d in direct["fresh"]), 2
            ),
            "added_fresh_paired_median_ms": round(median(added_fresh), 2),
            "added_fresh_paired_range_ms": [
                round(quantile(added_fresh, 0.1), 2),
                round(quantile(added_fresh, 0.9), 2),
            ],
            "ttfe_fast_p50_ms": round(median(r["ttfe_ms"] for r in fast), 2),
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
                s["ttfe_kept_p50_ms"],
                f"{s['added_kept_p50_ms']:+.2f} (paired {s['added_kept_paired_median_ms']:+.2f})"
                if name != "direct"
                else "",
                s["ttfe_fresh_p50_ms"],
                f"{s['added_fresh_p50_ms']:+.2f} (paired {s['added_fresh_paired_median_ms']:+.2f})"
                if name != "direct"
                else "",
                s["slow_ttfe_p50_ms"],
                s["slow_total_p50_ms"],
                s["server_cpu_us_per_event"],
                s["not_done"],
            ]
        )
    text = table(
        [
            "path",
            "events/s (median)",
            "ratio to direct (range)",
            "first event ms p50, kept-alive",
            "added vs direct ms",
            "first event ms p50, fresh connection",
            "added vs direct ms",
            f"first event ms ({SLOW_WORDS}x{SLOW_DELAY_MS} ms turn)",
            f"total ms ({SLOW_WORDS}x{SLOW_DELAY_MS} ms turn)",
            "server CPU µs/event",
            "turns not ending in done",
        ],
        rows,
    )
    summary["verdicts"] = {
        name: {
            "added_fresh_target_1.5ms": s["added_fresh_p50_ms"] <= 1.5,
            "added_kept_target_0.75ms": s["added_kept_p50_ms"] <= 0.75,
            "throughput_target_0.75": s["ratio_to_direct_median"] >= 0.75,
        }
        for name, s in summary.items()
        if name != "direct"
    }
    return text, summary
