"""The Hetzner request budget: requests per smoke cycle, and 30 provisions at once on a 300-request bucket.

``uv run python benchmarks/bench_hetzner_budget.py`` (or ``benchmarks/run.py hetzner_budget``); writes
``benchmarks/results/hetzner_budget.json``. About 7 minutes.

Every Hetzner request goes through a counting reverse proxy (in this process, aiohttp) in front of a
``smoke simulate-cloud --timing realistic`` process: it records each request's method, path, query, User-Agent,
status and ``RateLimit-Remaining``, so 429s are counted (the simulator counts requests, not statuses) and every
request is named by what sent it (``label_selector`` tells smoke's three listings apart). The simulator's own
``/_sim/state`` count is read as well, as a cross-check. Agents (``/agents/...``) are reached directly: they are
not Hetzner requests.

1. **One cycle, smoke**: a database, ``smoke serve`` and one ``smoke worker`` with their defaults
   (``PROVISION_POLL_SECONDS`` 2, concurrency 10); per cycle, ``POST /_sim/reset``, then provision through the API,
   wait ``running`` (the agent answers), delete, wait ``deleted``. ``CYCLES`` cycles one after the other.
2. **One cycle, baseline**: hcloud-python as its docs show it, on a simulator of its own: ``servers.create``,
   ``action.wait_until_finished()`` (the client's default: every second), ``servers.get_by_id`` every 500 ms until
   ``running`` (as hcloud-go polls), ``servers.delete`` and ``wait_until_finished()``. No agent: only Hetzner.
3. **30 at once on ``--rate-limit 300``**: a fresh simulator, database, API and a worker with ``--concurrency 30``;
   30 provisions sent at once, wait until all are ``running`` (600 s at most), delete them all, wait ``deleted``.
   Then one ``GET /v1/locations`` straight to the simulator reads the bucket's ``RateLimit-Remaining``. Baseline:
   30 threads each doing the hcloud-python cycle of 2 at once, against a fresh ``--rate-limit 300`` simulator
   (hcloud-python retries a 429 five times with backoff, then raises; a thread that raises stops there).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
import asyncpg
import httpx
from aiohttp import web

from benchmarks.harness import (
    SIM_TOKEN,
    SMOKE,
    Server,
    Stack,
    api_server,
    bench_database,
    free_port,
    log,
    median,
    provision_body,
    simulate_cloud_server,
    smoke_argv,
    smoke_env,
    table,
)

CYCLES = 2
"""Two, to keep ``run.py all`` under 15 minutes (each smoke cycle waits out a realistic boot, about 50 s)."""
CONCURRENT = 30
LOW_RATE_LIMIT = 300
GOAL_PER_CYCLE = 25
PREVIOUS_PER_CYCLE = 48
SERVER_POLL_SECONDS = 0.5
"""The baseline's reads of a starting server: every 500 ms, as hcloud-go polls."""
CYCLE_TIMEOUT = 180.0
RUNNING_TIMEOUT = 600.0
DELETED_TIMEOUT = 300.0
BASELINE_CONCURRENT_DEADLINE = 200.0
"""The 30 hcloud threads are abandoned after this (their simulator is then stopped, so they end at once)."""
# The catalog's agent-default / fsn1 / small: what smoke creates, so the baseline creates the same server.
SERVER_TYPE, IMAGE, LOCATION = "cpx22", "ubuntu-24.04", "fsn1"
_ID = re.compile(r"/\d+(?=/|$)")


# ---------------------------------------------------------------- the counting proxy


@dataclass
class Hit:
    at: float
    client: str
    method: str
    path: str
    query: str
    status: int
    remaining: int | None

    @property
    def route(self) -> str:
        return f"{self.method} {_ID.sub('/{id}', self.path)}"


@dataclass
class CountingProxy:
    """``/v1/...`` forwarded to ``upstream`` as it is; every answer recorded (a 429 included, whoever retries it)."""

    upstream: str
    hits: list[Hit] = field(default_factory=list)
    url: str = ""

    def mark(self) -> int:
        return len(self.hits)

    def since(self, mark: int) -> list[Hit]:
        return self.hits[mark:]

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        session: aiohttp.ClientSession = request.app["session"]
        headers = {k: v for k, v in request.headers.items() if k.lower() in _REQUEST_HEADERS}
        body = await request.read()
        async with session.request(
            request.method, self.upstream + request.path_qs, headers=headers, data=body or None
        ) as answer:
            content = await answer.read()
            out = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP_HEADERS}
            remaining = answer.headers.get("RateLimit-Remaining")
            agent = request.headers.get("User-Agent", "")
            self.hits.append(
                Hit(
                    at=time.time(),
                    client="smoke" if agent.startswith("smoke") else "hcloud" if "hcloud" in agent else agent,
                    method=request.method,
                    path=request.path,
                    query=request.query_string,
                    status=answer.status,
                    remaining=int(remaining) if remaining and remaining.isdigit() else None,
                )
            )
            return web.Response(status=answer.status, body=content, headers=out)

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[CountingProxy]:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), auto_decompress=False)
        app["session"] = session
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"
        try:
            yield self
        finally:
            await runner.cleanup()
            await session.close()


_REQUEST_HEADERS = {"authorization", "content-type", "user-agent", "accept"}
_HOP_HEADERS = {"content-length", "transfer-encoding", "connection", "content-encoding", "keep-alive", "date", "server"}


def purpose(hit: Hit) -> str:
    """What a request was for, from its route and, for ``GET /servers``, its label selector."""
    route = hit.route
    if route == "GET /v1/servers":
        selector = parse_qs(hit.query).get("label_selector", [""])[0]
        if "smoke-instance-id=" in selector:
            return "label lookup before create"
        if "smoke-customer-id=" in selector:
            return "shared listing (server polls)"
        if selector == "managed-by=smoke":
            return "reconcile cron listing"
        return "server listing"
    return {
        "POST /v1/servers": "create",
        "GET /v1/servers/{id}": "server read (poll)",
        "DELETE /v1/servers/{id}": "delete",
        "GET /v1/actions/{id}": "action poll",
    }.get(route, route)


def tally(hits: list[Hit]) -> dict[str, Any]:
    return {
        "requests": len(hits),
        "status_429": sum(h.status == 429 for h in hits),
        "non_2xx": sum(not 200 <= h.status < 300 for h in hits),
        "by_route": dict(Counter(h.route for h in hits).most_common()),
        "by_purpose": dict(Counter(purpose(h) for h in hits).most_common()),
        "min_remaining": min((h.remaining for h in hits if h.remaining is not None), default=None),
    }


# ---------------------------------------------------------------- simulators and the smoke stack


def simulator(rate_limit: int = 3600) -> Server:
    flags = ("--timing", "realistic", "--rate-limit", str(rate_limit), "--token", SIM_TOKEN)
    return simulate_cloud_server(f"simulator-realistic-{rate_limit}", *flags)


def cloud_env(proxy: CountingProxy, sim: Server) -> dict[str, str]:
    """Hetzner through the proxy, agents straight at the simulator; every other setting its default."""
    return {
        "HETZNER_API_URL": f"{proxy.url}/v1",
        "HETZNER_API_TOKEN": SIM_TOKEN,
        "AGENT_URL_TEMPLATE": f"{sim.url}/agents/{{provider_server_id}}",
        "SMOKE_MAX_LIVE_INSTANCES": "100000",
    }


async def smoke_stack(
    stack: Stack, url: str, token: str, proxy: CountingProxy, sim: Server, concurrency: int
) -> tuple[Server, Server]:
    api_env: dict[str, Any] = {"LOG_LEVEL": "WARNING", **cloud_env(proxy, sim)}
    api = await stack.serve(api_server("smoke-serve", url, token, **api_env))
    assert api.url is not None
    env = smoke_env(url, token, PUBLIC_URL=api.url, LOG_LEVEL="INFO", **cloud_env(proxy, sim))
    argv = smoke_argv("worker", "--concurrency", str(concurrency), "--metrics-port", "0")
    worker = await stack.serve(Server(f"smoke-worker-c{concurrency}", argv, env))
    # The worker checks the account (the catalog: a request per location, server type and image) before it logs
    # that it started: those requests are its start's, not a cycle's.
    await wait_for_log(worker, "worker started on queue", 60.0)
    return api, worker


async def wait_for_log(server: Server, needle: str, timeout: float) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while count_in_log(server, needle) < 1:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.name} did not log {needle!r} in {timeout} s:\n{server.tail()}")
        await asyncio.sleep(0.1)


async def sim_requests(sim: Server) -> dict[str, int]:
    async with httpx.AsyncClient(base_url=sim.url or "", timeout=10) as client:
        state = (await client.get("/_sim/state")).json()
    return {route: n for route, n in state["requests"].items() if " /v1" in route}


async def sim_agent_requests(sim: Server) -> int:
    async with httpx.AsyncClient(base_url=sim.url or "", timeout=10) as client:
        state = (await client.get("/_sim/state")).json()
    return sum(n for route, n in state["requests"].items() if " /agents" in route)


async def servers_left(sim: Server) -> int:
    async with httpx.AsyncClient(base_url=sim.url or "", timeout=10) as client:
        return len((await client.get("/_sim/state")).json()["servers"])


async def sim_reset(sim: Server) -> None:
    async with httpx.AsyncClient(base_url=sim.url or "", timeout=10) as client:
        (await client.post("/_sim/reset")).raise_for_status()


async def bucket_now(sim: Server) -> dict[str, int]:
    """One ``GET /v1/locations`` straight to the simulator (not through the proxy): the bucket's headers."""
    async with httpx.AsyncClient(base_url=sim.url or "", timeout=10) as client:
        answer = await client.get("/v1/locations", headers={"Authorization": f"Bearer {SIM_TOKEN}"})
    return {
        "status": answer.status_code,
        "limit": int(answer.headers["RateLimit-Limit"]),
        "remaining": int(answer.headers["RateLimit-Remaining"]),
    }


async def budget_rows(url: str) -> list[dict[str, Any]]:
    """The governor's estimate (``cloud_request_budgets``), refilled to the database's clock."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT capacity, spent, least(capacity::float8, tokens + "
            "(extract(epoch FROM clock_timestamp()) - level_at) * capacity / 3600.0) AS tokens_now "
            "FROM cloud_request_budgets"
        )
    finally:
        await conn.close()
    return [{"capacity": r["capacity"], "spent": r["spent"], "tokens_now": round(r["tokens_now"], 1)} for r in rows]


def count_in_log(server: Server, needle: str) -> int:
    with contextlib.suppress(OSError):
        return server.log_path.read_text(errors="replace").count(needle)
    return -1


# ---------------------------------------------------------------- 1. one smoke cycle


async def wait_status(
    client: httpx.AsyncClient,
    instance_id: uuid.UUID,
    wanted: str,
    timeout: float,  # noqa: ASYNC109
) -> str:
    deadline = time.monotonic() + timeout
    status = "?"
    while time.monotonic() < deadline:
        answer = await client.get(f"{SMOKE}/instances/{instance_id}")
        if answer.status_code == 200:
            status = answer.json()["status"]
            if status == wanted or status == "failed":
                return str(status)
        await asyncio.sleep(0.2)
    return f"timeout ({status})"


async def smoke_cycle(api: Server, token: str, proxy: CountingProxy, sim: Server) -> dict[str, Any]:
    await sim_reset(sim)
    mark = proxy.mark()
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=api.url or "", headers=headers, timeout=30) as client:
        started = time.monotonic()
        answer = await client.post(f"{SMOKE}/provision", json=provision_body(f"budget-{secrets.token_hex(4)}"))
        answer.raise_for_status()
        instance_id = uuid.UUID(answer.json()["instance_id"])
        reached = await wait_status(client, instance_id, "running", CYCLE_TIMEOUT)
        running = time.monotonic()
        (await client.delete(f"{SMOKE}/instances/{instance_id}")).raise_for_status()
        gone = await wait_status(client, instance_id, "deleted", CYCLE_TIMEOUT)
        deleted = time.monotonic()
        events = (await client.get(f"{SMOKE}/instances/{instance_id}/events")).json()["events"]
    hits = [h for h in proxy.since(mark) if h.client == "smoke"]
    everything = tally(hits)
    in_cycle = [h for h in hits if purpose(h) != "reconcile cron listing"]
    return {
        "instance_id": str(instance_id),
        "reached": reached,
        "ended": gone,
        "provision_to_running_s": round(running - started, 1),
        "delete_to_deleted_s": round(deleted - running, 1),
        "cycle_s": round(deleted - started, 1),
        "hetzner": everything,
        "requests_without_reconcile": len(in_cycle),
        "simulator_count": await sim_requests(sim),
        "agent_requests": await sim_agent_requests(sim),
        "events": [f"{e['status']}: {e['reason']}" if e.get("reason") else e["status"] for e in events],
    }


# ---------------------------------------------------------------- 2. the hcloud-python baseline


def hcloud_cycle(api_url: str, name: str, deadline: float) -> dict[str, Any]:
    """The cycle as hcloud-python's docs write it; returns its timings, or where it stopped and why."""
    from hcloud import Client
    from hcloud.images import Image
    from hcloud.locations import Location
    from hcloud.server_types import ServerType

    client = Client(token=SIM_TOKEN, api_endpoint=api_url)
    result: dict[str, Any] = {"name": name, "ok": False, "step": "create"}
    started = time.monotonic()
    try:
        response = client.servers.create(
            name=name,
            server_type=ServerType(name=SERVER_TYPE),
            image=Image(name=IMAGE),
            location=Location(name=LOCATION),
        )
        result["step"] = "wait create action"
        assert response.action is not None
        response.action.wait_until_finished()
        result["step"] = "poll server until running"
        assert response.server.id is not None
        while True:
            server = client.servers.get_by_id(response.server.id)
            if server.status == "running":
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"server {server.id} still {server.status}")
            time.sleep(SERVER_POLL_SECONDS)
        result["provision_to_running_s"] = round(time.monotonic() - started, 1)
        result["step"] = "delete"
        action = client.servers.delete(server)
        result["step"] = "wait delete action"
        action.wait_until_finished()
        result["cycle_s"] = round(time.monotonic() - started, 1)
        result["ok"] = True
        result["step"] = "done"
    except Exception as exc:  # the thread reports what stopped it
        result["error"] = f"{type(exc).__name__}: {exc}"[:300]
        result["after_s"] = round(time.monotonic() - started, 1)
    return result


async def baseline_cycle(proxy: CountingProxy, sim: Server) -> dict[str, Any]:
    await sim_reset(sim)
    mark = proxy.mark()
    name = f"hcloud-{secrets.token_hex(4)}"
    result = await asyncio.to_thread(hcloud_cycle, f"{proxy.url}/v1", name, time.monotonic() + CYCLE_TIMEOUT)
    hits = [h for h in proxy.since(mark) if h.client == "hcloud"]
    result["hetzner"] = tally(hits)
    result["simulator_count"] = await sim_requests(sim)
    return result


# ---------------------------------------------------------------- 3. 30 at once on a 300-request bucket


async def smoke_concurrent(
    api: Server, worker: Server, url: str, token: str, proxy: CountingProxy, sim: Server
) -> dict[str, Any]:
    await sim_reset(sim)  # a full bucket, as the baseline's fresh simulator has
    mark = proxy.mark()
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=CONCURRENT, max_keepalive_connections=CONCURRENT)
    db = await asyncpg.connect(url)
    try:
        async with httpx.AsyncClient(base_url=api.url or "", headers=headers, timeout=60, limits=limits) as client:
            started = time.time()

            async def provision() -> uuid.UUID:
                answer = await client.post(f"{SMOKE}/provision", json=provision_body(f"c-{secrets.token_hex(6)}"))
                answer.raise_for_status()
                return uuid.UUID(answer.json()["instance_id"])

            ids = list(await asyncio.gather(*(provision() for _ in range(CONCURRENT))))
            counts = await _wait_all(db, ids, ("running", "failed"), RUNNING_TIMEOUT)
            all_running = time.time()
            at_running = tally([h for h in proxy.since(mark) if h.client == "smoke"])
            history = await db.fetch(
                "SELECT instance_id, extract(epoch FROM min(created_at)) AS at FROM instance_status_history "
                "WHERE instance_id = ANY($1::uuid[]) AND status = 'running' GROUP BY 1",
                ids,
            )
            reasons = await db.fetch(
                "SELECT failure_reason, count(*) AS n FROM instances WHERE id = ANY($1::uuid[]) AND status = 'failed' "
                "GROUP BY 1",
                ids,
            )
            log(f"30 at once: {counts} after {all_running - started:.1f} s; deleting")
            deleting = time.time()
            await asyncio.gather(*(client.delete(f"{SMOKE}/instances/{i}") for i in ids))
            deleted_counts = await _wait_all(db, ids, ("deleted",), DELETED_TIMEOUT)
            all_deleted = time.time()
            retrying = await db.fetchval(
                "SELECT count(*) FROM instance_status_history WHERE instance_id = ANY($1::uuid[]) "
                "AND reason LIKE 'retrying%'",
                ids,
            )
    finally:
        await db.close()
    hits = [h for h in proxy.since(mark) if h.client == "smoke"]
    before_get = await sim_requests(sim)
    left = await servers_left(sim)
    bucket = await bucket_now(sim)
    times = sorted(float(r["at"]) - started for r in history)
    return {
        "statuses_at_end_of_wait": counts,
        "deleted": deleted_counts,
        "failure_reasons": {str(r["failure_reason"])[:200]: r["n"] for r in reasons},
        "first_running_s": round(times[0], 1) if times else None,
        "all_running_s": round(times[-1], 1) if times else None,
        "wait_ended_s": round(all_running - started, 1),
        "delete_to_all_deleted_s": round(all_deleted - deleting, 1),
        "total_s": round(all_deleted - started, 1),
        "hetzner": tally(hits),
        "hetzner_until_all_running": at_running,
        "hetzner_deleting": tally([h for h in hits if h.at >= deleting]),
        "servers_left_on_the_cloud": left,
        "requests_per_cycle": round(len(hits) / CONCURRENT, 2),
        "simulator_count": before_get,
        "bucket_after": bucket,
        "governor_estimate_after": await budget_rows(url),
        "retrying_events": retrying,
        "worker_log_rate_limit_exceeded": count_in_log(worker, "rate_limit_exceeded"),
        "timeline": [[round(h.at - started, 2), h.route, h.status, h.remaining] for h in hits],
    }


async def _wait_all(
    db: asyncpg.Connection,
    ids: list[uuid.UUID],
    done: tuple[str, ...],
    timeout: float,  # noqa: ASYNC109
) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        rows = await db.fetch("SELECT status, count(*) AS n FROM instances WHERE id = ANY($1::uuid[]) GROUP BY 1", ids)
        counts = {r["status"]: r["n"] for r in rows}
        if sum(counts.get(s, 0) for s in done) >= len(ids) or time.monotonic() > deadline:
            return counts
        await asyncio.sleep(0.25)


def _error_code(error: str) -> str:
    """``APIException: <message> (<code>, <correlation id>)`` -> ``APIException <code>``."""
    match = re.search(r"\((\w+), [0-9a-f]+\)", error)
    return f"{error.split(':', 1)[0]} {match.group(1)}" if match else error[:120]


async def baseline_concurrent(proxy: CountingProxy, sim: Server) -> dict[str, Any]:
    mark = proxy.mark()
    wall_start, started = time.time(), time.monotonic()
    deadline = started + BASELINE_CONCURRENT_DEADLINE
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(max_workers=CONCURRENT, thread_name_prefix="hcloud")
    futures = [
        loop.run_in_executor(
            pool, hcloud_cycle, f"{proxy.url}/v1", f"hcloud-c-{i:02d}-{secrets.token_hex(3)}", deadline
        )
        for i in range(CONCURRENT)
    ]
    done, pending = await asyncio.wait(futures, timeout=BASELINE_CONCURRENT_DEADLINE + 10)
    elapsed = time.monotonic() - started
    pool.shutdown(wait=False, cancel_futures=True)
    results = [f.result() for f in done]
    hits = [h for h in proxy.since(mark) if h.client == "hcloud"]
    before_get = await sim_requests(sim)
    left = await servers_left(sim)
    bucket = await bucket_now(sim)
    running = sorted(r["provision_to_running_s"] for r in results if "provision_to_running_s" in r)
    return {
        "threads": CONCURRENT,
        "completed_cycles": sum(r["ok"] for r in results),
        "reached_running": len(running),
        "failed": dict(Counter(f"{r['step']}: {_error_code(r.get('error', ''))}" for r in results if not r["ok"])),
        "servers_left_on_the_cloud": left,
        "still_running_at_deadline": len(pending),
        "all_running_s": running[-1] if len(running) == CONCURRENT else None,
        "last_running_s": running[-1] if running else None,
        "elapsed_s": round(elapsed, 1),
        "hetzner": tally(hits),
        "simulator_count": before_get,
        "bucket_after": bucket,
        "threads_results": results,
        "timeline": [[round(h.at - wall_start, 2), h.route, h.status, h.remaining] for h in hits],
    }


# ---------------------------------------------------------------- the run


async def run() -> dict[str, Any]:
    token = secrets.token_urlsafe(18)
    out: dict[str, Any] = {
        "params": {
            "cycles": CYCLES,
            "timing": "realistic",
            "rate_limit_cycles": 3600,
            "concurrent": CONCURRENT,
            "rate_limit_concurrent": LOW_RATE_LIMIT,
            "provision_poll_seconds": 2.0,
            "worker_concurrency_cycles": 10,
            "worker_concurrency_concurrent": CONCURRENT,
            "baseline": f"hcloud-python: create, wait_until_finished (default 1 s), get_by_id every "
            f"{SERVER_POLL_SECONDS} s, delete, wait_until_finished",
            "server": [SERVER_TYPE, IMAGE, LOCATION],
        }
    }
    # 1 and 2: cycles one after the other; smoke and hcloud each on a simulator (and proxy) of their own.
    async with bench_database("budget_cycles") as url, Stack() as stack:
        sim = await stack.serve(simulator())
        base_sim = await stack.serve(simulator())
        proxy = await stack.enter_async_context(CountingProxy(sim.url or "").serving())
        base_proxy = await stack.enter_async_context(CountingProxy(base_sim.url or "").serving())
        api, _worker = await smoke_stack(stack, url, token, proxy, sim, concurrency=10)
        out["smoke_startup_requests"] = tally(proxy.hits)
        phase_mark, phase_started = proxy.mark(), time.monotonic()
        smoke_cycles, base_cycles = [], []
        for n in range(CYCLES):
            smoke = await smoke_cycle(api, token, proxy, sim)
            smoke_cycles.append(smoke)
            log(
                f"smoke cycle {n + 1}: {smoke['hetzner']['requests']} requests "
                f"({smoke['requests_without_reconcile']} without the reconcile cron), {smoke['cycle_s']} s, "
                f"{smoke['reached']}/{smoke['ended']} {smoke['hetzner']['by_purpose']}"
            )
            base = await baseline_cycle(base_proxy, base_sim)
            base_cycles.append(base)
            log(
                f"hcloud cycle {n + 1}: {base['hetzner']['requests']} requests, {base.get('cycle_s')} s, "
                f"ok={base['ok']} {base['hetzner']['by_purpose']} {base.get('error', '')}"
            )
        out["smoke_cycles"], out["hcloud_cycles"] = smoke_cycles, base_cycles
        # Between smoke's cycles (while hcloud's ran) its worker still spent its reconcile cron's listing.
        out["smoke_whole_phase"] = tally(proxy.since(phase_mark)) | {
            "seconds": round(time.monotonic() - phase_started, 1)
        }
        out["smoke_cycles_budget_row"] = await budget_rows(url)
    # 3: 30 at once on a 300-request bucket.
    async with bench_database("budget_concurrent") as url, Stack() as stack:
        sim = await stack.serve(simulator(LOW_RATE_LIMIT))
        proxy = await stack.enter_async_context(CountingProxy(sim.url or "").serving())
        api, worker = await smoke_stack(stack, url, token, proxy, sim, concurrency=CONCURRENT)
        out["smoke_concurrent_startup_requests"] = tally(proxy.hits)
        result = await smoke_concurrent(api, worker, url, token, proxy, sim)
        out["smoke_concurrent"] = result
        log(
            f"smoke 30 at once: {result['hetzner']['requests']} requests, {result['hetzner']['status_429']} 429s, "
            f"all running at {result['all_running_s']} s, bucket after {result['bucket_after']}"
        )
    async with Stack() as stack:
        sim = await stack.serve(simulator(LOW_RATE_LIMIT))
        proxy = await stack.enter_async_context(CountingProxy(sim.url or "").serving())
        result = await baseline_concurrent(proxy, sim)
        out["hcloud_concurrent"] = result
        log(
            f"hcloud 30 at once: {result['hetzner']['requests']} requests, {result['hetzner']['status_429']} 429s, "
            f"{result['completed_cycles']} cycles completed, {result['failed']}"
        )
    return out


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "n/a"


def summarize(raw: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    smoke, base = raw["smoke_cycles"], raw["hcloud_cycles"]
    rows = []
    for n, (s, b) in enumerate(zip(smoke, base, strict=True), start=1):
        rows.append(
            [
                n,
                f"{s['hetzner']['requests']} ({s['requests_without_reconcile']})",
                ", ".join(f"{k} {v}" for k, v in s["hetzner"]["by_purpose"].items()),
                f"{s['provision_to_running_s']} + {s['delete_to_deleted_s']} = {s['cycle_s']}",
                b["hetzner"]["requests"],
                ", ".join(f"{k} {v}" for k, v in b["hetzner"]["by_purpose"].items()),
                f"{b.get('provision_to_running_s')} + "
                f"{round(b['cycle_s'] - b['provision_to_running_s'], 1) if b['ok'] else '-'} = {b.get('cycle_s')}",
                _ratio(s["hetzner"]["requests"], b["hetzner"]["requests"]),
            ]
        )
    s_med = median(s["hetzner"]["requests"] for s in smoke)
    s_med_cycle = median(s["requests_without_reconcile"] for s in smoke)
    b_med = median(b["hetzner"]["requests"] for b in base)
    text = table(
        [
            "cycle",
            "smoke requests (without reconcile cron)",
            "smoke by purpose",
            "smoke s: to running + to deleted",
            "hcloud requests",
            "hcloud by purpose",
            "hcloud s: to running + to deleted",
            "smoke ÷ hcloud",
        ],
        rows,
    )
    sc, bc = raw["smoke_concurrent"], raw["hcloud_concurrent"]
    conc_rows = [
        [
            "smoke (API + 1 worker, concurrency 30)",
            sc["hetzner"]["requests"],
            sc["requests_per_cycle"],
            sc["hetzner"]["status_429"],
            f"{sc['statuses_at_end_of_wait']}, {sc['servers_left_on_the_cloud']} servers left",
            sc["all_running_s"],
            sc["total_s"],
            sc["hetzner"]["min_remaining"],
            sc["bucket_after"]["remaining"],
        ],
        [
            "hcloud-python, 30 threads",
            bc["hetzner"]["requests"],
            round(bc["hetzner"]["requests"] / CONCURRENT, 2),
            bc["hetzner"]["status_429"],
            f"{bc['completed_cycles']} cycles done, {bc['reached_running']} reached running, "
            f"{bc['servers_left_on_the_cloud']} servers left",
            bc["all_running_s"] if bc["all_running_s"] is not None else f"- (last {bc['last_running_s']})",
            bc["elapsed_s"],
            bc["hetzner"]["min_remaining"],
            bc["bucket_after"]["remaining"],
        ],
    ]
    text += "\n\n" + table(
        [
            f"{CONCURRENT} at once, --rate-limit {LOW_RATE_LIMIT}",
            "requests",
            "per cycle",
            "429s",
            "outcome",
            "all running, s",
            "until the end, s",
            "lowest RateLimit-Remaining seen",
            "RateLimit-Remaining after",
        ],
        conc_rows,
    )
    startup, whole = raw["smoke_startup_requests"], raw["smoke_whole_phase"]
    text += (
        f"\n\nsmoke worker start (preflight, before any cycle): {startup['requests']} requests "
        f"{startup['by_route']}; at the 30-at-once start: {raw['smoke_concurrent_startup_requests']['requests']}. "
        f"smoke over the whole cycles phase ({whole['seconds']} s, hcloud's cycles in between): {whole['requests']} "
        f"requests {whole['by_purpose']}. 30 at once, smoke: {sc['hetzner_until_all_running']['requests']} until all "
        f"running, {sc['hetzner_deleting']['requests']} deleting; governor's estimate after: "
        f"{sc['governor_estimate_after']}."
    )
    summary = {
        "smoke_startup_requests": startup["requests"],
        "smoke_requests_per_cycle": [s["hetzner"]["requests"] for s in smoke],
        "smoke_requests_per_cycle_without_reconcile": [s["requests_without_reconcile"] for s in smoke],
        "hcloud_requests_per_cycle": [b["hetzner"]["requests"] for b in base],
        "smoke_median": s_med,
        "smoke_median_without_reconcile": s_med_cycle,
        "hcloud_median": b_med,
        "smoke_over_hcloud": round(s_med / b_med, 2) if b_med else None,
        "goal_per_cycle": GOAL_PER_CYCLE,
        "previous_per_cycle": PREVIOUS_PER_CYCLE,
        "smoke_over_previous": round(s_med / PREVIOUS_PER_CYCLE, 2),
        "concurrent": {
            "smoke": {k: sc[k] for k in ("all_running_s", "total_s", "requests_per_cycle", "bucket_after")}
            | {"requests": sc["hetzner"]["requests"], "status_429": sc["hetzner"]["status_429"]},
            "hcloud": {k: bc[k] for k in ("completed_cycles", "reached_running", "elapsed_s", "bucket_after")}
            | {"requests": bc["hetzner"]["requests"], "status_429": bc["hetzner"]["status_429"]},
        },
    }
    return text, summary


if __name__ == "__main__":
    import uvloop

    from benchmarks.run import main

    raise SystemExit(uvloop.run(main(["hetzner_budget"])))
