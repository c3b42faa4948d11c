"""Figure 4, the provisioning pipeline, and figure 5, the footprint of the API and the worker.

Two stacks side by side, alike but for the job queue: ``QUEUE_URL`` unset (saq on PostgreSQL, the default) and
``QUEUE_URL=redis://127.0.0.1:6379/<an empty db>``. Each stack is its own database, a simulated cloud
(``smoke simulate-cloud --action-seconds 0 --boot-seconds 0``), ``smoke serve`` and ``smoke worker`` (concurrency
10, the default), all subprocesses. Per round, for each queue in turn (the simulated cloud is reset before each run,
so that the 3600-request budget of its rate limit is full):

- ``burst``: 100 ``POST /provision`` sent at once (20 in flight at most), then wait until all are ``running``;
- ``closed-10``: 10 clients, each provisioning and waiting for ``running`` before the next, 100 in all.

Times come from the database: the client's clock when it sent the request, the ``provisioning`` row of
``instance_status_history`` (the worker claimed the job) and its ``running`` row (same host, same clock).
provisions/s = 100 / (last ``running`` - first request). After the last round, each API gets the other figures'
traffic (wrk on Smoke Status and Smoke Llm Events, 20 chat turns of 2000 events), and the resident memory of every
API and worker process is read from procfs (figure 5).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx

from benchmarks.harness import (
    REDIS_BASE_URL,
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
    memory_mb,
    pg_backend_pids,
    provision_body,
    quantile,
    simulator_server,
    spread,
    table,
    worker_server,
    wrk,
)

QUEUES = ("postgres", "redis")
MODES = ("burst", "closed-10")
RUN_TIMEOUT = 180.0


@contextlib.asynccontextmanager
async def _redis_db() -> AsyncIterator[str]:
    """An empty Redis database (15 down to 8); the saq keys left in it are deleted on exit."""
    import redis.asyncio as redis

    chosen = None
    for index in range(15, 7, -1):
        client = redis.Redis.from_url(f"{REDIS_BASE_URL}/{index}")
        try:
            if await client.dbsize() == 0:
                chosen = index
                break
        finally:
            await client.aclose()
    if chosen is None:
        raise RuntimeError("no empty Redis database among 8..15")
    url = f"{REDIS_BASE_URL}/{chosen}"
    log(f"redis queue on {url}")
    try:
        yield url
    finally:
        client = redis.Redis.from_url(url)
        try:
            keys = [key async for key in client.scan_iter(match="saq:*", count=1000)]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()


class Pipeline:
    """One stack: its database, simulated cloud, API and worker."""

    def __init__(self, queue: str, url: str, token: str, simulator: Server, api: Server, worker: Server) -> None:
        self.queue, self.url, self.token = queue, url, token
        self.simulator, self.api, self.worker = simulator, api, worker

    async def reset_cloud(self) -> None:
        async with httpx.AsyncClient(base_url=self.simulator.url or "", timeout=10) as client:
            (await client.post("/_sim/reset")).raise_for_status()

    async def hetzner_requests(self) -> int:
        async with httpx.AsyncClient(base_url=self.simulator.url or "", timeout=10) as client:
            state = (await client.get("/_sim/state")).json()
        return sum(count for route, count in state["requests"].items() if " /v1" in route)

    async def _cpu(self) -> dict[str, Any]:
        """CPU seconds so far of the API, the worker, the simulated cloud and each PostgreSQL backend of the db."""
        backends = await pg_backend_pids(self.url)
        return {
            "api": cpu_seconds(self.api.pids()),
            "worker": cpu_seconds(self.worker.pids()),
            "simulator": cpu_seconds(self.simulator.pids()),
            "pg_pids": {pid: cpu_seconds([pid]) for pid in backends},
        }

    async def run(self, mode: str, count: int) -> dict[str, Any]:
        await self.reset_cloud()
        submitted: dict[uuid.UUID, float] = {}
        answered: dict[uuid.UUID, float] = {}
        done: dict[uuid.UUID, asyncio.Event] = {}
        failures: list[str] = []
        db = await asyncpg.connect(self.url)
        stop = asyncio.Event()

        async def poller() -> None:
            """Mark instances ``running`` (or ``failed``) as they get there; one query every 20 ms."""
            while not stop.is_set():
                waiting = [i for i, e in done.items() if not e.is_set()]
                if waiting:
                    rows = await db.fetch(
                        "SELECT id, status FROM instances WHERE id = ANY($1::uuid[]) "
                        "AND status IN ('running', 'failed')",
                        waiting,
                    )
                    for row in rows:
                        if row["status"] == "failed":
                            failures.append(str(row["id"]))
                        done[row["id"]].set()
                await asyncio.sleep(0.02)

        headers = {"Authorization": f"Bearer {self.token}"}
        limits = httpx.Limits(max_connections=20, max_keepalive_connections=20)
        async with httpx.AsyncClient(base_url=self.api.url or "", headers=headers, timeout=30, limits=limits) as client:

            async def provision() -> uuid.UUID:
                sent = time.time()
                response = await client.post(f"{SMOKE}/provision", json=provision_body(f"b-{secrets.token_hex(6)}"))
                response.raise_for_status()
                instance_id = uuid.UUID(response.json()["instance_id"])
                submitted[instance_id] = sent
                answered[instance_id] = time.time()
                done[instance_id] = asyncio.Event()
                return instance_id

            poll_task = asyncio.create_task(poller())
            requests0 = await self.hetzner_requests()
            cpu0 = await self._cpu()
            try:
                async with asyncio.timeout(RUN_TIMEOUT):
                    if mode == "burst":
                        await asyncio.gather(*(provision() for _ in range(count)))
                        await asyncio.gather(*(event.wait() for event in done.values()))
                    else:
                        remaining = [count]

                        async def client_loop() -> None:
                            while remaining[0] > 0:
                                remaining[0] -= 1
                                instance_id = await provision()
                                await done[instance_id].wait()

                        await asyncio.gather(*(client_loop() for _ in range(10)))
            finally:
                stop.set()
                await poll_task
            requests1 = await self.hetzner_requests()
            cpu1 = await self._cpu()
        rows = await db.fetch(
            "SELECT instance_id, status, extract(epoch FROM created_at) AS at FROM instance_status_history "
            "WHERE instance_id = ANY($1::uuid[]) AND status IN ('provisioning', 'running')",
            list(submitted),
        )
        await db.close()
        claimed = {r["instance_id"]: float(r["at"]) for r in rows if r["status"] == "provisioning"}
        running = {r["instance_id"]: float(r["at"]) for r in rows if r["status"] == "running"}
        total = [(running[i] - t) * 1e3 for i, t in submitted.items() if i in running]
        queued = [(claimed[i] - t) * 1e3 for i, t in submitted.items() if i in claimed]
        build = [(running[i] - claimed[i]) * 1e3 for i in running if i in claimed]
        api_ms = [(answered[i] - t) * 1e3 for i, t in submitted.items()]
        cpu = {k: round(1e3 * (cpu1[k] - cpu0.get(k, 0.0)) / count, 1) for k in cpu1 if k != "pg_pids"}
        cpu["postgres"] = round(
            1e3 * sum(cpu1["pg_pids"][p] - cpu0["pg_pids"].get(p, 0.0) for p in cpu1["pg_pids"]) / count, 1
        )
        span = max(running.values()) - min(submitted.values())
        return {
            "mode": mode,
            "count": count,
            "running": len(running),
            "failed": len(failures),
            "p50_ms": round(median(total), 1),
            "p95_ms": round(quantile(total, 0.95), 1),
            "max_ms": round(max(total), 1),
            "api_answer_p50_ms": round(median(api_ms), 1),
            "queue_wait_p50_ms": round(median(queued), 1),
            "build_p50_ms": round(median(build), 1),
            "cpu_ms_per_provision": cpu,
            "provisions_per_s": round(len(running) / span, 1),
            "span_s": round(span, 2),
            "hetzner_requests": requests1 - requests0,
        }


async def _footprint_traffic(pipeline: Pipeline, instance_id: uuid.UUID) -> None:
    """What the other figures put through an API: Status and Llm Events under wrk, and 20 long chat turns."""
    assert pipeline.api.url is not None
    status = f"{pipeline.api.url}{SMOKE}/instances/{instance_id}"
    await wrk(status, pipeline.token, connections=32, seconds=10)
    await wrk(f"{status}/llm-events?window_seconds=900", pipeline.token, connections=32, seconds=5)
    message = " ".join(["a"] * 2000)
    headers = {"Authorization": f"Bearer {pipeline.token}"}
    async with httpx.AsyncClient(timeout=30, headers=headers) as client:
        for _ in range(20):
            async with client.stream("POST", f"{status}/chat", json={"message": message}) as response:
                response.raise_for_status()
                async for _chunk in response.aiter_raw():
                    pass


async def run(rounds: int = 3, count: int = 100) -> dict[str, Any]:
    token = secrets.token_urlsafe(18)
    load = {"before": loadavg()}
    results: dict[str, dict[str, list[dict[str, Any]]]] = {q: {m: [] for m in MODES} for q in QUEUES}
    memory: dict[str, Any] = {}
    async with (
        bench_database("prov_pg") as url_pg,
        bench_database("prov_redis") as url_redis,
        _redis_db() as redis_url,
        Stack() as stack,
    ):
        pipelines: dict[str, Pipeline] = {}
        for queue, url in (("postgres", url_pg), ("redis", url_redis)):
            extra = {"QUEUE_URL": redis_url} if queue == "redis" else {}
            simulator = await stack.serve(simulator_server())
            api = await stack.serve(api_server("smoke-serve", url, token, **cloud_env(simulator), **extra))
            assert api.url is not None
            worker = await stack.serve(worker_server(url, token, api.url, **cloud_env(simulator), **extra))
            pipelines[queue] = Pipeline(queue, url, token, simulator, api, worker)
        await asyncio.sleep(2)  # the workers connect to their queues
        for queue, pipeline in pipelines.items():
            memory[queue] = {
                "idle": {"api": memory_mb(pipeline.api.pids()), "worker": memory_mb(pipeline.worker.pids())}
            }
            warm = await pipeline.run("closed-10", 10)  # warm-up: connections, caches; discarded
            log(f"{queue}: warm-up {warm['p50_ms']} ms p50")
        for rnd in range(rounds):
            for mode in MODES:
                for queue in QUEUES:
                    result = await pipelines[queue].run(mode, count)
                    result["round"] = rnd + 1
                    results[queue][mode].append(result)
                    log(
                        f"round {rnd + 1} {queue} {mode}: p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms, "
                        f"{result['provisions_per_s']}/s (queue wait p50 {result['queue_wait_p50_ms']} ms, "
                        f"build p50 {result['build_p50_ms']} ms, {result['hetzner_requests']} Hetzner requests, "
                        f"{result['failed']} failed)"
                    )
        for queue, pipeline in pipelines.items():
            memory[queue]["after_provisioning"] = {
                "api": memory_mb(pipeline.api.pids()),
                "worker": memory_mb(pipeline.worker.pids()),
            }
            conn = await asyncpg.connect(pipeline.url)
            last = await conn.fetchval("SELECT id FROM instances WHERE status = 'running' ORDER BY created_at DESC")
            instances = await conn.fetchval("SELECT count(*) FROM instances")
            await conn.close()
            await _footprint_traffic(pipeline, last)
            memory[queue]["after_all"] = {
                "api": memory_mb(pipeline.api.pids()),
                "worker": memory_mb(pipeline.worker.pids()),
                "instances_in_db": instances,
            }
            log(f"{queue}: memory {memory[queue]}")
    load["after"] = loadavg()
    return {
        "results": results,
        "memory": memory,
        "load": load,
        "params": {"rounds": rounds, "count": count, "worker_concurrency": 10, "provision_poll_seconds": 0.1},
    }


def summarize(result: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    results = result["results"]
    summary: dict[str, Any] = {}
    rows = []
    for mode in MODES:
        for queue in QUEUES:
            runs = results[queue][mode]
            p50 = [r["p50_ms"] for r in runs]
            s = {
                "p50_ms": round(median(p50)),
                "p50_range": [min(p50), max(p50)],
                "p95_ms": round(median(r["p95_ms"] for r in runs)),
                "api_answer_p50_ms": round(median(r["api_answer_p50_ms"] for r in runs), 1),
                "queue_wait_p50_ms": round(median(r["queue_wait_p50_ms"] for r in runs)),
                "build_p50_ms": round(median(r["build_p50_ms"] for r in runs)),
                "provisions_per_s": round(median(r["provisions_per_s"] for r in runs), 1),
                "provisions_per_s_range": [
                    min(r["provisions_per_s"] for r in runs),
                    max(r["provisions_per_s"] for r in runs),
                ],
                "hetzner_requests_per_provision": round(median(r["hetzner_requests"] / r["count"] for r in runs), 2),
                "cpu_ms_per_provision": {
                    k: round(median(r["cpu_ms_per_provision"][k] for r in runs), 1)
                    for k in runs[0]["cpu_ms_per_provision"]
                },
                "failed": sum(r["failed"] for r in runs),
                "running": sum(r["running"] for r in runs),
            }
            summary[f"{queue} / {mode}"] = s
            cpu = s["cpu_ms_per_provision"]
            rows.append(
                [
                    mode,
                    queue,
                    s["p50_ms"],
                    spread(p50, 0),
                    s["p95_ms"],
                    s["api_answer_p50_ms"],
                    s["queue_wait_p50_ms"],
                    s["build_p50_ms"],
                    s["provisions_per_s"],
                    spread([r["provisions_per_s"] for r in runs], 1),
                    s["hetzner_requests_per_provision"],
                    f"{cpu['api']} / {cpu['worker']} / {cpu['simulator']} / {cpu['postgres']}",
                    f"{s['running']}/{s['failed']}",
                ]
            )
    for mode in MODES:
        ratios = [
            r["provisions_per_s"] / p["provisions_per_s"]
            for r, p in zip(results["redis"][mode], results["postgres"][mode], strict=True)
        ]
        summary[f"redis/postgres provisions/s, {mode}"] = {
            "median": round(median(ratios), 2),
            "range": [round(min(ratios), 2), round(max(ratios), 2)],
        }
    text = table(
        [
            "mode",
            "queue",
            "p50 ms (median)",
            "p50 range",
            "p95 ms",
            "POST answered p50 ms",
            "request→claimed p50 ms",
            "claimed→running p50 ms",
            "provisions/s",
            "provisions/s range",
            "Hetzner requests per provision",
            "CPU ms per provision: API / worker / cloud sim / PostgreSQL",
            "running/failed",
        ],
        rows,
    )
    mem_rows = []
    for queue, snapshots in result["memory"].items():
        for moment, snap in snapshots.items():
            mem_rows.append(
                [
                    queue,
                    moment,
                    snap["api"]["rss_mb"],
                    snap["api"]["peak_rss_mb"],
                    snap["worker"]["rss_mb"],
                    snap["worker"]["peak_rss_mb"],
                ]
            )
    text += "\n\n" + table(
        ["queue", "moment", "API RSS MB", "API peak RSS MB", "worker RSS MB", "worker peak RSS MB"], mem_rows
    )
    final = {q: s["after_all"] for q, s in result["memory"].items()}
    summary["memory"] = result["memory"]
    summary["verdicts"] = {
        "p50_target_0.5s": {k: v["p50_ms"] <= 500 for k, v in summary.items() if " / " in k},
        "footprint_target_150MB": {
            q: {"api": f["api"]["peak_rss_mb"] <= 150, "worker": f["worker"]["peak_rss_mb"] <= 150}
            for q, f in final.items()
        },
    }
    return text, summary
