"""Figure 1, the read path: Smoke Status under wrk -c32, beside (a) the bare asyncpg ASGI app and (b) FastAPI + ORM.

Per round, for each configuration in turn: start its server, check its answers (200 / 401 / 404 / 422), warm up
(wrk -c32, discarded), measure (wrk -c32 --latency, with CPU of the server and of its PostgreSQL backends), measure
unloaded latency (wrk -c1 --latency), read its memory, stop it. Ratios are to config 1 (bare / uvicorn) of the same
round; the table gives the median over rounds and the range of the per-round values.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import asyncpg
import httpx

from benchmarks.harness import (
    SMOKE,
    Server,
    Stack,
    api_server,
    base_env,
    bench_database,
    free_port,
    granian_argv,
    loadavg,
    log,
    measured_wrk,
    median,
    memory_mb,
    seed_instances,
    spread,
    table,
    uvicorn_argv,
    whatif_api_server,
    wrk,
)
from smoke.settings import DEFAULT_CUSTOMER_ID

# (name, app, server); the first is the baseline every ratio refers to. 7-9 are smoke with proposed changes applied
# from outside src/ (benchmarks/apps/smoke_api_whatif.py), served like 3: they measure a change before it is made.
CONFIGS: list[tuple[str, str, str]] = [
    ("1 bare ASGI + asyncpg / uvicorn", "bare", "uvicorn"),
    ("2 bare ASGI + asyncpg / granian", "bare", "granian"),
    ("3 smoke / uvicorn (uvloop, httptools)", "smoke", "uvicorn"),
    ("4 smoke / granian", "smoke", "granian"),
    ("5 smoke / `smoke serve` as shipped", "smoke", "smoke-serve"),
    ("6 FastAPI + pydantic + SA ORM / uvicorn", "fastapi", "uvicorn"),
    ("7 what-if: smoke + gc.freeze() / uvicorn", "whatif:gc-freeze", "uvicorn"),
    ("8 what-if: smoke + APP-scoped status service / uvicorn", "whatif:app-scoped-status", "uvicorn"),
    ("9 what-if: smoke + both / uvicorn", "whatif:gc-freeze,app-scoped-status", "uvicorn"),
]
MODULES = {"bare": "benchmarks.apps.bare_asgi:app", "fastapi": "benchmarks.apps.fastapi_orm:app"}


def _server(app: str, kind: str, database_url: str, token: str) -> Server:
    if app == "smoke":
        return api_server(kind, database_url, token)
    if app.startswith("whatif:"):
        return whatif_api_server(app.removeprefix("whatif:"), database_url, token)
    port = free_port()
    argv = uvicorn_argv(MODULES[app], port) if kind == "uvicorn" else granian_argv(MODULES[app], port)
    env = base_env(DATABASE_URL=database_url, OPS_BEARER_TOKEN=token)
    return Server(f"{app}-{kind}", argv, env, url=f"http://127.0.0.1:{port}", ready_path="/")


async def _check(base: str, token: str, instance_id: uuid.UUID, expected: dict[str, Any]) -> dict[str, Any]:
    """The four answers every variant must give alike; raises if the 200 body differs from Smoke Status's."""
    url = f"{base}{SMOKE}/instances"
    ok_headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=10) as client:
        ok = await client.get(f"{url}/{instance_id}", headers=ok_headers)
        bad_token = await client.get(f"{url}/{instance_id}", headers={"Authorization": "Bearer nope"})
        unknown = await client.get(f"{url}/{uuid.uuid4()}", headers=ok_headers)
        malformed = await client.get(f"{url}/not-a-uuid", headers=ok_headers)
    statuses = {
        "ok": ok.status_code,
        "bad_token": bad_token.status_code,
        "unknown": unknown.status_code,
        "malformed": malformed.status_code,
    }
    if statuses != {"ok": 200, "bad_token": 401, "unknown": 404, "malformed": 422} or ok.json() != expected:
        raise AssertionError(f"{base}: {statuses} {ok.text}")
    return {"statuses": statuses, "body": ok.text}


async def run(
    rounds: int = 3, seconds: int = 8, warmup: int = 2, c1_seconds: int = 3, configs: list[int] | None = None
) -> dict[str, Any]:
    chosen = [c for i, c in enumerate(CONFIGS) if configs is None or i + 1 in configs or i == 0]
    token = secrets.token_urlsafe(18)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in chosen}
    load = {"before": loadavg()}
    async with bench_database("read") as url:
        log("seeding 100,000 instances over 50 customers")
        await seed_instances(url, 100_000, customers=50)
        conn = await asyncpg.connect(url)
        row = await conn.fetchrow(
            "SELECT id, hostname, status FROM instances WHERE customer_id = $1 ORDER BY hostname LIMIT 1",
            DEFAULT_CUSTOMER_ID,
        )
        await conn.close()
        assert row is not None
        instance_id = row["id"]
        expected = {"hostname": row["hostname"], "id": str(instance_id), "status": row["status"]}
        for rnd in range(rounds):
            for name, app, kind in chosen:
                async with Stack() as stack:
                    server = await stack.serve(_server(app, kind, url, token))
                    assert server.url is not None
                    check = await _check(server.url, token, instance_id, expected)
                    target = f"{server.url}{SMOKE}/instances/{instance_id}"
                    await wrk(target, token, connections=32, seconds=warmup)
                    c32 = await measured_wrk(target, token, server, url, connections=32, seconds=seconds)
                    c1 = await wrk(target, token, connections=1, seconds=c1_seconds)
                    mem = memory_mb(server.pids())
                    results[name].append(
                        {"round": rnd + 1, "c32": c32, "c1": c1, "memory": mem, "check": check["statuses"]}
                    )
                    log(
                        f"round {rnd + 1} {name}: {c32['rps']:.0f} rps, p50 {c32['p50_ms']} ms, "
                        f"p99 {c32['p99_ms']} ms, c1 p50 {c1['p50_ms']} ms, "
                        f"{c32['server_cpu_us_per_req']} us CPU/req, non-2xx {c32['non_2xx']}, "
                        f"errors {c32['socket_errors']}"
                    )
    load["after"] = loadavg()
    return {
        "configs": results,
        "baseline": chosen[0][0],
        "instance_rows": 100_000,
        "load": load,
        "params": {"rounds": rounds, "seconds": seconds, "warmup": warmup, "c1_seconds": c1_seconds, "connections": 32},
    }


def summarize(result: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    configs = result["configs"]
    base = configs[result["baseline"]]
    summary: dict[str, Any] = {}
    rows = []
    for name, runs in configs.items():
        rps = [r["c32"]["rps"] for r in runs]
        ratios = [r["c32"]["rps"] / b["c32"]["rps"] for r, b in zip(runs, base, strict=True)]
        s = {
            "rps_median": round(median(rps)),
            "rps_rounds": [round(x) for x in rps],
            "ratio_median": round(median(ratios), 2),
            "ratio_range": [round(min(ratios), 2), round(max(ratios), 2)],
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
        summary[name] = s
        rows.append(
            [
                name,
                s["rps_median"],
                " / ".join(str(x) for x in s["rps_rounds"]),
                f"{s['ratio_median']:.2f} ({spread(ratios)})",
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
    text = table(
        [
            "config",
            "rps median",
            "rps per round",
            "ratio to (1) median (range)",
            "c32 p50 ms",
            "c32 p99 ms",
            "c1 p50 ms",
            "c1 p99 ms",
            "server CPU µs/req",
            "PG CPU µs/req",
            "RSS MB",
            "non-2xx/socket err",
        ],
        rows,
    )
    smoke_names = [n for n in configs if n.startswith(("3", "4", "5", "7", "8", "9"))]
    fastapi_name = next((n for n in configs if n.startswith("6")), None)
    verdicts = {}
    for n in smoke_names:
        per_round_vs_fastapi = (
            [r["c32"]["rps"] / f["c32"]["rps"] for r, f in zip(configs[n], configs[fastapi_name], strict=True)]
            if fastapi_name
            else []
        )
        verdicts[n] = {
            "vs_bare_median": summary[n]["ratio_median"],
            "vs_bare_target_0.5": summary[n]["ratio_median"] >= 0.5,
            "vs_fastapi_median": round(median(per_round_vs_fastapi), 2) if per_round_vs_fastapi else None,
            "vs_fastapi_range": [round(min(per_round_vs_fastapi), 2), round(max(per_round_vs_fastapi), 2)]
            if per_round_vs_fastapi
            else None,
            "vs_fastapi_target_3": bool(per_round_vs_fastapi) and median(per_round_vs_fastapi) >= 3,
        }
    summary["verdicts"] = verdicts
    return text, summary
