"""Figure 3, the pipeline's throughput: provisions per second that one ``smoke worker`` sustains on the simulated
cloud's ``--timing fast`` (every action and every boot 1 s), and what a second worker adds on this machine; and
figure 4, the resident memory of the API and of the workers afterwards.

One stack: its database, ``smoke simulate-cloud --timing fast`` (its rate limit raised out of the way:
``--rate-limit 100000000``, so that the figure is the pipeline's, not the bucket's), one ``smoke serve``, and 1 or
2 ``smoke worker`` processes, all with their default settings (``PROVISION_POLL_SECONDS`` 2, the PostgreSQL queue)
but the worker's ``--concurrency``. Per round and configuration (workers x concurrency): the workers are started,
``count`` provisions are sent at once (20 in flight at most; the API answers each once its job is queued), and the
run ends when every instance is ``running``; then the workers are stopped. The simulated cloud is reset before each
run.

Throughput is the steady rate: the ``running`` transitions after the first wave (as many as are in flight at once)
divided by the time from the end of that wave to the last one, from ``instance_status_history`` (one host, one
clock); each run sends three times as many provisions as can be in flight (480 at most: the simulated cloud's
addresses). The run also records, per provision, the CPU of the API, of the workers, of the simulated cloud and of
the database's backends (procfs), how busy each was over the run (% of one core) and the whole machine (/proc/stat),
and the Hetzner requests (the simulator's count), so that the bound can be named: the concurrency (Little's law:
in flight / time per provision), a CPU, or the database.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from benchmarks.harness import (
    SMOKE,
    Server,
    Stack,
    api_server,
    bench_database,
    cpu_seconds,
    loadavg,
    log,
    median,
    memory_mb,
    pg_backend_pids,
    provision_body,
    quantile,
    simulate_cloud_server,
    smoke_argv,
    smoke_env,
    spread,
    table,
)

CONFIGS: tuple[tuple[int, int], ...] = tuple(
    tuple(int(x) for x in c.split("x"))
    for c in os.environ.get("BENCH_PROVISION_CONFIGS", "1x10,2x10,1x100,2x100").split(",")
)
"""(workers, concurrency per worker): the default concurrency, then enough in flight to find a resource's bound."""
RUN_TIMEOUT = 240.0
MAX_PER_RUN = 480
"""The simulated cloud has about 500 IPv4 addresses (more servers at once fail with ``resource_unavailable``)."""
RATE_LIMIT = 100_000_000


def _simulator() -> Server:
    flags = ("--timing", "fast", "--token-delay-ms", "0", "--rate-limit", str(RATE_LIMIT))
    return simulate_cloud_server("simulator-fast", *flags)


def _cloud_env(simulator: Server) -> dict[str, str]:
    assert simulator.url is not None
    return {
        "HETZNER_API_URL": f"{simulator.url}/v1",
        "HETZNER_API_TOKEN": "sim-token",
        "AGENT_URL_TEMPLATE": f"{simulator.url}/agents/{{provider_server_id}}",
        "SMOKE_MAX_LIVE_INSTANCES": "100000",
        "LOG_LEVEL": "WARNING",
    }


def _worker(database_url: str, token: str, api: Server, simulator: Server, concurrency: int) -> Server:
    assert api.url is not None
    env = smoke_env(database_url, token, PUBLIC_URL=api.url, **_cloud_env(simulator))
    argv = smoke_argv("worker", "--concurrency", str(concurrency), "--metrics-port", "0")
    return Server(f"smoke-worker-c{concurrency}", argv, env)


def _machine_ticks() -> tuple[int, int]:
    """All CPU ticks of the machine and its idle ones (idle + iowait), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields), fields[3] + fields[4]


async def _hetzner_requests(simulator: Server) -> int:
    async with httpx.AsyncClient(base_url=simulator.url or "", timeout=10) as client:
        state = (await client.get("/_sim/state")).json()
    return sum(count for route, count in state["requests"].items() if " /v1" in route)


async def _cpu(api: Server, workers: list[Server], simulator: Server, url: str) -> dict[str, Any]:
    backends = await pg_backend_pids(url)
    return {
        "api": cpu_seconds(api.pids()),
        "workers": cpu_seconds([pid for w in workers for pid in w.pids()]),
        "simulator": cpu_seconds(simulator.pids()),
        "pg_pids": {pid: cpu_seconds([pid]) for pid in backends},
    }


async def _run_once(
    url: str, token: str, api: Server, simulator: Server, workers: list[Server], count: int, in_flight: int
) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=simulator.url or "", timeout=10) as sim:
        (await sim.post("/_sim/reset")).raise_for_status()
    submitted: dict[uuid.UUID, float] = {}
    db = await asyncpg.connect(url)
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=20, max_keepalive_connections=20)
    requests0 = await _hetzner_requests(simulator)
    cpu0 = await _cpu(api, workers, simulator, url)
    machine0 = _machine_ticks()
    started = time.time()
    async with httpx.AsyncClient(base_url=api.url or "", headers=headers, timeout=60, limits=limits) as client:

        async def provision() -> None:
            sent = time.time()
            response = await client.post(f"{SMOKE}/provision", json=provision_body(f"t-{secrets.token_hex(6)}"))
            response.raise_for_status()
            submitted[uuid.UUID(response.json()["instance_id"])] = sent

        await asyncio.gather(*(provision() for _ in range(count)))
    all_sent = time.time()
    failed = 0
    async with asyncio.timeout(RUN_TIMEOUT):
        while True:
            row = await db.fetchrow(
                "SELECT count(*) FILTER (WHERE status = 'running') AS running, "
                "count(*) FILTER (WHERE status = 'failed') AS failed FROM instances WHERE id = ANY($1::uuid[])",
                list(submitted),
            )
            assert row is not None
            failed = row["failed"]
            if row["running"] + failed >= count:
                break
            await asyncio.sleep(0.1)
    ended = time.time()
    cpu1 = await _cpu(api, workers, simulator, url)
    machine1 = _machine_ticks()
    requests1 = await _hetzner_requests(simulator)
    rows = await db.fetch(
        "SELECT instance_id, status, extract(epoch FROM created_at) AS at FROM instance_status_history "
        "WHERE instance_id = ANY($1::uuid[]) AND status IN ('provisioning', 'running')",
        list(submitted),
    )
    reasons = await db.fetch(
        "SELECT failure_reason, count(*) AS n FROM instances WHERE id = ANY($1::uuid[]) AND status = 'failed' "
        "GROUP BY 1 ORDER BY 2 DESC LIMIT 5",
        list(submitted),
    )
    await db.close()
    claimed = {r["instance_id"]: float(r["at"]) for r in rows if r["status"] == "provisioning"}
    running = {r["instance_id"]: float(r["at"]) for r in rows if r["status"] == "running"}
    times = sorted(running.values())
    # Steady state: after the first wave (as many as are in flight at once) has finished, to the last.
    first_wave = min(in_flight, len(times) // 3)
    steady = (len(times) - first_wave) / (times[-1] - times[first_wave - 1])
    wall = ended - started
    span = {k: cpu1[k] - cpu0[k] for k in ("api", "workers", "simulator")}
    span["postgres"] = sum(cpu1["pg_pids"][p] - cpu0["pg_pids"].get(p, 0.0) for p in cpu1["pg_pids"])
    build = [(running[i] - claimed[i]) * 1e3 for i in running if i in claimed]
    return {
        "count": count,
        "running": len(running),
        "failed": failed,
        "failure_reasons": {str(r["failure_reason"])[:200]: r["n"] for r in reasons},
        "steady_provisions_per_s": round(steady, 2),
        "overall_provisions_per_s": round(len(running) / (times[-1] - min(submitted.values())), 2),
        "submit_s": round(all_sent - started, 2),
        "wall_s": round(wall, 2),
        "build_p50_ms": round(median(build), 1),
        "build_p90_ms": round(quantile(build, 0.9), 1),
        "queue_wait_p50_ms": round(median((claimed[i] - t) * 1e3 for i, t in submitted.items() if i in claimed), 1),
        "hetzner_requests_per_provision": round((requests1 - requests0) / count, 2),
        "cpu_ms_per_provision": {k: round(1e3 * v / count, 1) for k, v in span.items()},
        "busy_pct_of_a_core": {k: round(100 * v / wall, 1) for k, v in span.items()},
        "machine_busy_pct": round(100 * (1 - (machine1[1] - machine0[1]) / max(machine1[0] - machine0[0], 1)), 1),
        "loadavg_after": loadavg(),
    }


async def run(rounds: int = 2, count: int = 200) -> dict[str, Any]:
    token = secrets.token_urlsafe(18)
    load = {"before": loadavg()}
    results: dict[str, list[dict[str, Any]]] = {f"{w} x {c}": [] for w, c in CONFIGS}
    memory: dict[str, Any] = {}
    async with bench_database("throughput") as url, Stack() as stack:
        simulator = await stack.serve(_simulator())
        api = await stack.serve(api_server("smoke-serve", url, token, **_cloud_env(simulator)))
        for rnd in range(rounds):
            for workers_n, concurrency in CONFIGS:
                name = f"{workers_n} x {concurrency}"
                async with Stack() as worker_stack:
                    workers = [
                        await worker_stack.serve(_worker(url, token, api, simulator, concurrency))
                        for _ in range(workers_n)
                    ]
                    await asyncio.sleep(2)  # the workers connect to the queue
                    in_flight = concurrency * workers_n
                    # enough for waves after the first, within the simulated cloud's ~500 IPv4 addresses
                    per_run = min(MAX_PER_RUN, max(count // 4, 3 * in_flight))
                    result = await _run_once(url, token, api, simulator, workers, per_run, in_flight)
                    result["round"] = rnd + 1
                    results[name].append(result)
                    memory[name] = {"api": memory_mb(api.pids()), "workers": [memory_mb(w.pids()) for w in workers]}
                log(
                    f"round {rnd + 1} {name}: steady {result['steady_provisions_per_s']}/s, "
                    f"build p50 {result['build_p50_ms']} ms, busy {result['busy_pct_of_a_core']}, "
                    f"{result['hetzner_requests_per_provision']} Hetzner requests each, {result['failed']} failed "
                    f"{result['failure_reasons']}"
                )
    load["after"] = loadavg()
    return {
        "results": results,
        "memory": memory,
        "load": load,
        "params": {
            "rounds": rounds,
            "count": count,
            "configs": CONFIGS,
            "timing": "fast",
            "rate_limit": RATE_LIMIT,
            "provision_poll_seconds": 2.0,
        },
    }


def summarize(result: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    summary: dict[str, Any] = {}
    rows = []
    single = {c: result["results"].get(f"1 x {c}") for _, c in CONFIGS}
    for name, runs in result["results"].items():
        workers_n, concurrency = (int(x) for x in name.split(" x "))
        rates = [r["steady_provisions_per_s"] for r in runs]
        build = median(r["build_p50_ms"] for r in runs)
        little = workers_n * concurrency / (build / 1e3)
        cpu = {k: round(median(r["cpu_ms_per_provision"][k] for r in runs), 1) for k in runs[0]["cpu_ms_per_provision"]}
        busy = {k: round(median(r["busy_pct_of_a_core"][k] for r in runs)) for k in runs[0]["busy_pct_of_a_core"]}
        base = single[concurrency]
        scaling = (
            [r["steady_provisions_per_s"] / b["steady_provisions_per_s"] for r, b in zip(runs, base, strict=True)]
            if base and workers_n == 2
            else []
        )
        s = {
            "steady_provisions_per_s_median": round(median(rates), 2),
            "steady_range": [min(rates), max(rates)],
            "build_p50_ms": round(build),
            "littles_law_bound_per_s": round(little, 1),
            "share_of_littles_bound": round(median(rates) / little, 2),
            "two_workers_over_one": round(median(scaling), 2) if scaling else None,
            "cpu_ms_per_provision": cpu,
            "busy_pct_of_a_core": busy,
            "machine_busy_pct": round(median(r["machine_busy_pct"] for r in runs)),
            "hetzner_requests_per_provision": round(median(r["hetzner_requests_per_provision"] for r in runs), 1),
            "failed": sum(r["failed"] for r in runs),
            "running": sum(r["running"] for r in runs),
        }
        summary[name] = s
        rows.append(
            [
                name,
                f"{s['steady_provisions_per_s_median']:.1f} ({spread(rates, 1)})",
                s["two_workers_over_one"] or "",
                s["build_p50_ms"],
                f"{s['littles_law_bound_per_s']:.1f} ({s['share_of_littles_bound']:.2f})",
                f"{cpu['api']} / {cpu['workers']} / {cpu['simulator']} / {cpu['postgres']}",
                f"{busy['api']} / {busy['workers']} / {busy['simulator']} / {busy['postgres']}",
                s["machine_busy_pct"],
                s["hetzner_requests_per_provision"],
                f"{s['running']}/{s['failed']}",
            ]
        )
    text = table(
        [
            "workers x concurrency",
            "provisions/s, steady (range)",
            "2 workers ÷ 1",
            "claimed→running p50 ms",
            "in flight ÷ time per provision, /s (share reached)",
            "CPU ms per provision: API / workers / cloud sim / PostgreSQL",
            "busy, % of a core: API / workers / cloud sim / PostgreSQL",
            "machine busy % (2 cores)",
            "Hetzner requests per provision",
            "running/failed",
        ],
        rows,
    )
    mem_rows = [
        [
            name,
            snap["api"]["rss_mb"],
            snap["api"]["peak_rss_mb"],
            " / ".join(str(w["peak_rss_mb"]) for w in snap["workers"]),
        ]
        for name, snap in result["memory"].items()
    ]
    text += "\n\n" + table(["after the run of", "API RSS MB", "API peak RSS MB", "worker peak RSS MB"], mem_rows)
    summary["memory"] = result["memory"]
    return text, summary
