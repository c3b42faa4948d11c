"""Figure 2, the chat relay: first-event latency and events/s through Smoke Chat versus straight to the agent.

One instance is provisioned for real (API + worker + simulated cloud with zero action and boot delays, all
subprocesses); then the worker is stopped and the targets are called. The client counts events by splitting the
raw bytes at blank lines (no SSE parser in the client), on uvloop. Targets:

- ``direct``: ``POST {simulator}/agents/{server_id}/v1/chat`` with the instance's agent token;
- ``relay / smoke-serve``: ``POST /internal/v1/smoke/instances/{id}/chat`` on ``smoke serve`` (this tree);
- ``relay / smoke-serve at main``: the same on ``smoke serve`` as it was on main, before this round's changes;
- ``relay floor``: ``benchmarks/apps/bare_relay.py`` on uvicorn, a relay with nothing but the hop (no framework,
  auth, database read or parsing), so that the run shows what one more process and connection cost by themselves.

Throughput, per run and target in rotating order: ``fast`` (2000 one-letter words, no pause between events: 2000
``delta`` + ``done`` = 2001 events) gives events/s; ``slow`` (10 words 50 ms apart, fewer runs) shows the relay does
not buffer.

Latency, measured apart from the throughput turns: per round, each relay in rotating order gets a block of
``LATENCY_PAIRS`` pairs of one-word turns (``delta`` + ``done``), the relay's turn then the same turn straight to
the agent, first on a kept-alive connection (one ``httpx.AsyncClient`` for every turn: ``one``), then with each
turn on its own connection, closed afterwards (a client without keep-alive, as ``smoke check`` and most CI
clients behave: ``fresh``). "Added" is the relay's p50 minus the p50 of the direct turns paired with it. Two
effects of this 2-vCPU machine, measured, are why: a one-word turn measured right after 2000-event turns measures
how the processes recover from the burst (+0.7 ms), and turns spread one by one over three server processes find
each relay's caches cold while the simulator, which every turn reaches, stays warm (+0.4 ms); see
docs/benchmarks.md, figure 2. Each turn ends with the agent reporting its usage to the API before ``done``, on every
path alike.
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
    base_env,
    baseline_source,
    bench_database,
    cloud_env,
    cpu_seconds,
    free_port,
    loadavg,
    log,
    median,
    provision_and_wait,
    quantile,
    simulator_server,
    spread,
    table,
    uvicorn_argv,
    worker_server,
)
from smoke.adapters.tokens import HmacTokenIssuer

FAST_WORDS = 2000
SLOW_WORDS = 10
SLOW_DELAY_MS = 50
LATENCY_PAIRS = 10  # (relay, direct) pairs of one-word turns per relay, round and kind of connection
RELAYS = {"smoke-serve": False, "smoke-serve at main": True}  # name: at_baseline
FLOOR = "relay floor (bare ASGI + aiohttp)"
LAYERS = {  # latency only: smoke's relay code without Litestar, without and with its read (relay_layers.py)
    "smoke's relay code alone": "pipeline",
    "smoke's relay code + its instance read": "pipeline+read",
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
        "started": started,  # perf_counter, for matching the server's own timings (profile_chat.py)
        "ttfe_ms": round((first - started) * 1e3, 3),
        "total_ms": round((ended - started) * 1e3, 3),
        "events": events,
        "last": kind,
    }


async def run(runs: int = 20, slow_runs: int = 10, latency_rounds: int = 20) -> dict[str, Any]:
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
        direct_url = f"{simulator.url}/agents/{server_id}/v1/chat"
        targets: dict[str, tuple[str, str, Server]] = {"direct": (direct_url, agent_token, simulator)}
        for name, api in apis.items():
            targets[f"relay / {name}"] = (f"{api.url}{SMOKE}/instances/{instance_id}/chat", token, api)
        floor = await stack.serve(_bare_app_server(direct_url, agent_token))
        targets[FLOOR] = (f"{floor.url}{SMOKE}/instances/{instance_id}/chat", token, floor)
        for name, layers in LAYERS.items():
            env = {"RELAY_LAYERS": layers, "RELAY_LAYERS_INSTANCE_ID": str(instance_id), "DATABASE_URL": url}
            layered = await stack.serve(_bare_app_server(direct_url, agent_token, "relay_layers", **env))
            targets[name] = (f"{layered.url}{SMOKE}/instances/{instance_id}/chat", token, layered)
        results: dict[str, dict[str, list[dict[str, Any]]]] = {
            name: {"fast": [], "one": [], "fresh": [], "one_direct": [], "fresh_direct": [], "slow": []}
            for name in targets
        }
        names = [name for name in targets if name not in LAYERS]  # throughput and slow turns
        relays = [name for name in targets if name != "direct"]
        kept = httpx.Limits(max_connections=10, max_keepalive_connections=10)
        no_keepalive = httpx.Limits(max_connections=10, max_keepalive_connections=0)
        async with (
            httpx.AsyncClient(timeout=30, limits=kept) as client,
            httpx.AsyncClient(timeout=30, limits=no_keepalive) as fresh_client,
        ):
            for name, (target, tok, _) in targets.items():  # warm-up: one turn of each kind, discarded
                if name not in LAYERS:
                    await _turn(client, target, tok, fast_message)
                await _turn(client, target, tok, "hello")
                await _turn(fresh_client, target, tok, "hello")
            for i in range(runs):
                for name in names[i % len(names) :] + names[: i % len(names)]:
                    target, tok, server = targets[name]
                    pids = server.pids()
                    cpu0 = cpu_seconds(pids)
                    fast = await _turn(client, target, tok, fast_message)
                    fast["server_cpu_us_per_event"] = round(
                        1e6 * (cpu_seconds(pids) - cpu0) / max(fast["events"], 1), 1
                    )
                    results[name]["fast"].append(fast)
            for i in range(latency_rounds):
                for name in relays[i % len(relays) :] + relays[: i % len(relays)]:
                    target, tok, _ = targets[name]
                    for kind, kind_client in (("one", client), ("fresh", fresh_client)):
                        for _ in range(LATENCY_PAIRS):
                            results[name][kind].append(await _turn(kind_client, target, tok, "hello"))
                            paired = await _turn(kind_client, direct_url, agent_token, "hello")
                            results[name][f"{kind}_direct"].append(paired)
                            results["direct"][kind].append(paired)
            async with httpx.AsyncClient(base_url=simulator.url, timeout=10) as sim:
                (await sim.put("/_sim/faults", json={"agent": {"token_delay_ms": SLOW_DELAY_MS}})).raise_for_status()
                for _ in range(slow_runs):
                    for name in names:
                        target, tok, _ = targets[name]
                        results[name]["slow"].append(await _turn(client, target, tok, slow_message))
                (await sim.put("/_sim/faults", json={"agent": {"token_delay_ms": 0}})).raise_for_status()
        for name, kinds in results.items():
            bad = [r for k in kinds.values() for r in k if r["last"] != "done"]
            counts = {r["events"] for r in kinds["fast"]}
            log(f"{name}: fast events {counts}, turns not ending in done: {len(bad)}")
    load["after"] = loadavg()
    for turn in (turn for kinds in results.values() for turns in kinds.values() for turn in turns):
        turn.pop("started", None)  # a clock reading, for profile_chat.py only (a direct turn is in two lists)
    return {
        "instance_id": str(instance_id),
        "main_commit": baseline_source()[0],
        "results": results,
        "load": load,
        "params": {
            "runs": runs,
            "latency_rounds": latency_rounds,
            "latency_pairs_per_round": LATENCY_PAIRS,
            "slow_runs": slow_runs,
            "fast_words": FAST_WORDS,
            "slow_words": SLOW_WORDS,
            "slow_delay_ms": SLOW_DELAY_MS,
        },
    }


def _bare_app_server(agent_url: str, agent_token: str, app: str = "bare_relay", **extra: str) -> Server:
    """``benchmarks/apps/{app}.py`` on uvicorn, relaying to the one agent."""
    port = free_port()
    env = base_env(BARE_RELAY_AGENT_URL=agent_url, BARE_RELAY_AGENT_TOKEN=agent_token, **extra)
    argv = uvicorn_argv(f"benchmarks.apps.{app}:app", port)
    return Server(app.replace("_", "-"), argv, env, url=f"http://127.0.0.1:{port}", ready_path="/")


def summarize(result: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    results = result["results"]
    direct = results["direct"]
    summary: dict[str, Any] = {}
    rows = []
    for name, kinds in results.items():
        fast, one, fresh, slow = kinds["fast"], kinds["one"], kinds["fresh"], kinds["slow"]
        eps = [r["events"] / (r["total_ms"] / 1e3) for r in fast]
        ratios = (
            [
                (r["events"] / r["total_ms"]) / (d["events"] / d["total_ms"])
                for r, d in zip(fast, direct["fast"], strict=True)
            ]
            if fast
            else []
        )
        one_direct = kinds["one_direct"] or direct["one"]  # the direct turns paired with this relay's
        fresh_direct = kinds["fresh_direct"] or direct["fresh"]
        added_one = [r["ttfe_ms"] - d["ttfe_ms"] for r, d in zip(one, one_direct, strict=True)]
        added_fresh = [r["ttfe_ms"] - d["ttfe_ms"] for r, d in zip(fresh, fresh_direct, strict=True)]
        s = {
            "events_per_s_median": round(median(eps)) if fast else None,  # none for the latency-only LAYERS
            "ratio_to_direct_median": round(median(ratios), 2) if fast else None,
            "ratio_to_direct_range": [round(min(ratios), 2), round(max(ratios), 2)] if fast else None,
            "ttfe_kept_p50_ms": round(median(r["ttfe_ms"] for r in one), 2),
            "ttfe_kept_p90_ms": round(quantile([r["ttfe_ms"] for r in one], 0.9), 2),
            "added_kept_p50_ms": round(median(r["ttfe_ms"] for r in one) - median(d["ttfe_ms"] for d in one_direct), 2),
            "added_kept_paired_median_ms": round(median(added_one), 2),
            "added_kept_paired_range_ms": [round(quantile(added_one, 0.1), 2), round(quantile(added_one, 0.9), 2)],
            "ttfe_fresh_p50_ms": round(median(r["ttfe_ms"] for r in fresh), 2),
            "ttfe_fresh_p90_ms": round(quantile([r["ttfe_ms"] for r in fresh], 0.9), 2),
            "added_fresh_p50_ms": round(
                median(r["ttfe_ms"] for r in fresh) - median(d["ttfe_ms"] for d in fresh_direct), 2
            ),
            "added_fresh_paired_median_ms": round(median(added_fresh), 2),
            "added_fresh_paired_range_ms": [
                round(quantile(added_fresh, 0.1), 2),
                round(quantile(added_fresh, 0.9), 2),
            ],
            "ttfe_fast_p50_ms": round(median(r["ttfe_ms"] for r in fast), 2) if fast else None,
            "slow_total_p50_ms": round(median(r["total_ms"] for r in slow), 1) if slow else None,
            "slow_ttfe_p50_ms": round(median(r["ttfe_ms"] for r in slow), 2) if slow else None,
            "server_cpu_us_per_event": round(median(r["server_cpu_us_per_event"] for r in fast), 1) if fast else None,
            "events_fast": sorted({r["events"] for r in fast}),
            "not_done": sum(1 for k in kinds.values() for r in k if r["last"] != "done"),
        }
        summary[name] = s
        cells = [
            name,
            s["events_per_s_median"],
            f"{s['ratio_to_direct_median']:.2f} ({spread(ratios)})" if fast else "",
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
        rows.append(["" if cell is None else cell for cell in cells])
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
        if name.startswith("relay / ")
    }
    return text, summary
