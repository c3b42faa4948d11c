"""Figure 1, the read path: Smoke Status and Smoke Poll under wrk -c32, beside the bare asyncpg ASGI app and the
FastAPI + SQLAlchemy ORM twin, and beside ``smoke serve`` as it was on main (before this round's changes).

Per round, for each configuration in turn: start its server (one process), check its answers on both routes
(200 / 401 / 404 / 422, the same bodies as smoke's), then for Smoke Status and for Smoke Poll: warm up (wrk -c32,
discarded), measure (wrk -c32 --latency, with the CPU of the server and of its PostgreSQL backends), measure
unloaded latency (wrk -c1 --latency); read its memory, stop it. Ratios are to config 1 (bare, asyncpg's default
pool) of the same round and route; the table gives the median over rounds and the range of the per-round values.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import asyncpg
import httpx

from benchmarks.apps import bare_asgi
from benchmarks.harness import (
    SMOKE,
    Server,
    Stack,
    api_server,
    base_env,
    baseline_source,
    bench_database,
    free_port,
    loadavg,
    log,
    measured_wrk,
    median,
    memory_mb,
    seed_instances,
    spread,
    table,
    uvicorn_argv,
    wrk,
)
from smoke.adapters.postgres import reads
from smoke.settings import DEFAULT_CUSTOMER_ID

ROUTES = ("status", "poll")
BARE = "1 bare ASGI + asyncpg (default pool) / uvicorn"
BARE_NO_RESET = "2 bare ASGI + asyncpg, pool without reset / uvicorn"
SMOKE_SERVE = "3 smoke / `smoke serve`"
SMOKE_AT_MAIN = "4 smoke / `smoke serve` at main"
FASTAPI = "5 FastAPI + pydantic + SA ORM / uvicorn"
CONFIGS = (BARE, BARE_NO_RESET, SMOKE_SERVE, SMOKE_AT_MAIN, FASTAPI)


def _server(name: str, database_url: str, token: str) -> Server:
    if name == SMOKE_SERVE:
        return api_server("smoke-serve", database_url, token)
    if name == SMOKE_AT_MAIN:
        return api_server("smoke-serve", database_url, token, at_baseline=True)
    port = free_port()
    module = "benchmarks.apps.fastapi_orm:app" if name == FASTAPI else "benchmarks.apps.bare_asgi:app"
    env = base_env(DATABASE_URL=database_url, OPS_BEARER_TOKEN=token)
    if name == BARE_NO_RESET:
        env["BARE_POOL_RESET"] = "none"
    label = {BARE: "bare", BARE_NO_RESET: "bare-no-reset", FASTAPI: "fastapi"}[name]
    return Server(label, uvicorn_argv(module, port), env, url=f"http://127.0.0.1:{port}", ready_path="/")


async def _check(base: str, token: str, paths: dict[str, str], expected: dict[str, Any]) -> dict[str, Any]:
    """The answers every variant must give alike; raises if a 200 body differs from smoke's."""
    url = f"{base}{SMOKE}/instances"
    ok_headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=10) as client:
        status = await client.get(base + paths["status"], headers=ok_headers)
        poll = await client.get(base + paths["poll"], headers=ok_headers)
        bad_token = await client.get(base + paths["status"], headers={"Authorization": "Bearer nope"})
        unknown = await client.get(f"{url}/{uuid.uuid4()}", headers=ok_headers)
        malformed = await client.get(f"{url}/not-a-uuid", headers=ok_headers)
        unseen_key = await client.get(f"{url}/by-key/never-seen", headers=ok_headers)
    statuses = {
        "status": status.status_code,
        "poll": poll.status_code,
        "bad_token": bad_token.status_code,
        "unknown": unknown.status_code,
        "malformed": malformed.status_code,
        "unseen_key": unseen_key.status_code,
    }
    want = {"status": 200, "poll": 200, "bad_token": 401, "unknown": 404, "malformed": 422, "unseen_key": 200}
    bodies = {"status": status.json(), "poll": poll.json(), "unseen_key": unseen_key.json()}
    if statuses != want or bodies != expected:
        raise AssertionError(f"{base}: {statuses} {bodies} (expected {expected})")
    return statuses


async def run(
    rounds: int = 3, seconds: int = 5, warmup: int = 1, c1_seconds: int = 1, configs: list[int] | None = None
) -> dict[str, Any]:
    if (bare_asgi.VIEW_SQL, bare_asgi.POLL_SQL) != (reads._VIEW, reads._POLL):
        raise AssertionError("benchmarks/apps/bare_asgi.py no longer runs smoke's statements")
    chosen = [c for i, c in enumerate(CONFIGS) if configs is None or i + 1 in configs or i == 0]
    token = secrets.token_urlsafe(18)
    results: dict[str, dict[str, list[dict[str, Any]]]] = {r: {name: [] for name in chosen} for r in ROUTES}
    load = {"before": loadavg()}
    baseline_commit, _ = baseline_source()
    async with bench_database("read") as url:
        log("seeding 100,000 instances over 50 customers")
        await seed_instances(url, 100_000, customers=50)
        conn = await asyncpg.connect(url)
        row = await conn.fetchrow(
            "SELECT i.id, i.hostname, i.status, l.idempotency_key FROM instances i "
            "JOIN provision_ledger l ON l.instance_id = i.id WHERE i.customer_id = $1 ORDER BY i.hostname LIMIT 1",
            DEFAULT_CUSTOMER_ID,
        )
        await conn.close()
        assert row is not None
        instance_id = row["id"]
        paths = {
            "status": f"{SMOKE}/instances/{instance_id}",
            "poll": f"{SMOKE}/instances/by-key/{row['idempotency_key']}",
        }
        expected = {
            "status": {"hostname": row["hostname"], "id": str(instance_id), "status": row["status"]},
            "poll": {"found": True, "instance_id": str(instance_id), "status": row["status"]},
            "unseen_key": {"found": False, "instance_id": None, "status": None},
        }
        for rnd in range(rounds):
            order = chosen[rnd % len(chosen) :] + chosen[: rnd % len(chosen)]  # rotate: no config always first
            for name in order:
                async with Stack() as stack:
                    server = await stack.serve(_server(name, url, token))
                    assert server.url is not None
                    check = await _check(server.url, token, paths, expected)
                    for route in ROUTES:
                        target = server.url + paths[route]
                        await wrk(target, token, connections=32, seconds=warmup)
                        c32 = await measured_wrk(target, token, server, url, connections=32, seconds=seconds)
                        c1 = await wrk(target, token, connections=1, seconds=c1_seconds)
                        results[route][name].append(
                            {"round": rnd + 1, "c32": c32, "c1": c1, "memory": memory_mb(server.pids()), "check": check}
                        )
                        log(
                            f"round {rnd + 1} {route} {name}: {c32['rps']:.0f} rps, p50 {c32['p50_ms']} ms, "
                            f"p99 {c32['p99_ms']} ms, c1 p50 {c1['p50_ms']} ms, "
                            f"{c32['server_cpu_us_per_req']} us CPU/req, non-2xx {c32['non_2xx']}, "
                            f"errors {c32['socket_errors']}"
                        )
    load["after"] = loadavg()
    return {
        "routes": results,
        "baseline": BARE,
        "main_commit": baseline_commit,
        "instance_rows": 100_000,
        "load": load,
        "params": {"rounds": rounds, "seconds": seconds, "warmup": warmup, "c1_seconds": c1_seconds, "connections": 32},
    }


def _ratios(runs: list[dict[str, Any]], base: list[dict[str, Any]]) -> list[float]:
    by_round = {b["round"]: b["c32"]["rps"] for b in base}
    return [r["c32"]["rps"] / by_round[r["round"]] for r in runs]


def summarize(result: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    summary: dict[str, Any] = {}
    text_parts = []
    headers = [
        "config",
        "rps median",
        "rps per round",
        "÷ bare (1), median (range)",
        "÷ bare without reset (2)",
        "c32 p50 ms",
        "c32 p99 ms",
        "c1 p50 ms",
        "c1 p99 ms",
        "server CPU µs/req",
        "PG CPU µs/req",
        "RSS MB",
        "non-2xx/socket err",
    ]
    for route, configs in result["routes"].items():
        base = configs[result["baseline"]]
        lean = configs.get(BARE_NO_RESET)
        rows = []
        for name, runs in configs.items():
            rps = [r["c32"]["rps"] for r in sorted(runs, key=lambda r: r["round"])]
            ratios = _ratios(runs, base)
            lean_ratios = _ratios(runs, lean) if lean else []
            s = {
                "rps_median": round(median(rps)),
                "rps_rounds": [round(x) for x in rps],
                "ratio_median": round(median(ratios), 2),
                "ratio_range": [round(min(ratios), 2), round(max(ratios), 2)],
                "ratio_to_lean_bare_median": round(median(lean_ratios), 2) if lean_ratios else None,
                "ratio_to_lean_bare_range": [round(min(lean_ratios), 2), round(max(lean_ratios), 2)]
                if lean_ratios
                else None,
                "p50_ms": round(median(r["c32"]["p50_ms"] for r in runs), 1),
                "p99_ms": round(median(r["c32"]["p99_ms"] for r in runs), 1),
                "c1_p50_ms": round(median(r["c1"]["p50_ms"] for r in runs), 2),
                "c1_p99_ms": round(median(r["c1"]["p99_ms"] for r in runs), 2),
                "server_cpu_us_per_req": round(median(r["c32"]["server_cpu_us_per_req"] for r in runs)),
                "pg_cpu_us_per_req": round(median(r["c32"]["pg_cpu_us_per_req"] for r in runs)),
                "server_cpu_pct": round(median(r["c32"]["server_cpu_pct"] for r in runs)),
                "rss_mb": round(median(r["memory"]["rss_mb"] for r in runs)),
                "non_2xx": sum(r["c32"]["non_2xx"] + r["c1"]["non_2xx"] for r in runs),
                "socket_errors": sum(r["c32"]["socket_errors"] + r["c1"]["socket_errors"] for r in runs),
            }
            summary.setdefault(route, {})[name] = s
            rows.append(
                [
                    name,
                    s["rps_median"],
                    " / ".join(str(x) for x in s["rps_rounds"]),
                    f"{s['ratio_median']:.2f} ({spread(ratios)})",
                    f"{s['ratio_to_lean_bare_median']:.2f} ({spread(lean_ratios)})" if lean_ratios else "",
                    s["p50_ms"],
                    s["p99_ms"],
                    s["c1_p50_ms"],
                    s["c1_p99_ms"],
                    s["server_cpu_us_per_req"],
                    s["pg_cpu_us_per_req"],
                    s["rss_mb"],
                    f"{s['non_2xx']}/{s['socket_errors']}",
                ]
            )
        text_parts.append(f"Smoke {route.capitalize()}:\n\n" + table(headers, rows))
        verdict: dict[str, Any] = {}
        for name in (SMOKE_SERVE, SMOKE_AT_MAIN):
            if name not in configs or FASTAPI not in configs:
                continue
            vs_fastapi = _ratios(configs[name], configs[FASTAPI])
            verdict[name] = {
                "vs_bare_median": summary[route][name]["ratio_median"],
                "vs_bare_range": summary[route][name]["ratio_range"],
                "vs_bare_target_0.55": summary[route][name]["ratio_median"] >= 0.55,
                "vs_fastapi_median": round(median(vs_fastapi), 2),
                "vs_fastapi_range": [round(min(vs_fastapi), 2), round(max(vs_fastapi), 2)],
                "vs_fastapi_target_4": median(vs_fastapi) >= 4,
            }
        summary[route]["verdicts"] = verdict
        lines = []
        for name, v in verdict.items():
            bare_range = "-".join(f"{x:.2f}" for x in v["vs_bare_range"])
            fastapi_range = "-".join(f"{x:.2f}" for x in v["vs_fastapi_range"])
            lines.append(
                f"- {name}: {v['vs_bare_median']:.2f} of bare ({bare_range}), "
                f"{v['vs_fastapi_median']:.2f} times FastAPI ({fastapi_range})"
            )
        text_parts.append("\n".join(lines))
    return "\n\n".join(text_parts), summary
