"""Figure 3, the usage window count: Smoke Llm Events with 10^4 and with 10^6 rows in ``llm_usage_events``.

Two databases, alike but for the table's size: the target instance has 10^3 rows in the last 600 s (so all of them
stay inside the 900 s window for the whole run); the other rows belong to 1,000 other instances, spread uniformly
over the last 30 days, and everything is inserted in ``created_at`` order (an append-only log), then
``VACUUM ANALYZE``. One ``smoke serve`` per database. Per round, for each size in turn:

- through the API: ``wrk -t1 -c1 -d1s`` (warm-up, discarded), then ``wrk -t1 -c1 -d5s --latency`` on
  ``GET /instances/{id}/llm-events?window_seconds=900`` (the endpoint's two statements: the ownership check and
  the count);
- the statement alone: ``AsyncpgUsageEventStore.count_window`` on an asyncpg pool, 20 warm-up + 200 timed calls.

The ratio 10^6/10^4 is taken per round, on the API p50. Once per database: the plan with literal parameters
(``EXPLAIN (ANALYZE, BUFFERS)``) and the generic plan a prepared statement may switch to (``plan_cache_mode =
force_generic_plan``).
"""

from __future__ import annotations

import secrets
import time
import uuid
from typing import Any

import asyncpg
import httpx

from benchmarks.harness import (
    SMOKE,
    Stack,
    api_server,
    bench_database,
    loadavg,
    log,
    median,
    quantile,
    seed_instances,
    spread,
    table,
    wrk,
)
from smoke.adapters.postgres.reads import _COUNT, AsyncpgUsageEventStore
from smoke.settings import DEFAULT_CUSTOMER_ID

SIZES = (10_000, 1_000_000)
TARGET_ROWS = 1_000
OTHER_INSTANCES = 1_000
WINDOW = 900

_FILL = """
INSERT INTO llm_usage_events (instance_id, request_id, provider, model, input_tokens, output_tokens, created_at)
SELECT instance_id, 'bench-' || row_number() OVER (), provider, 'bench-model', 10, 20, created_at FROM (
  SELECT $1::uuid AS instance_id,
         (ARRAY['anthropic', 'google', 'mistral', 'openai'])[1 + g % 4] AS provider,
         now() - random() * interval '600 seconds' AS created_at
  FROM generate_series(1, $2::int) g
  UNION ALL
  SELECT o.ids[1 + g % array_length(o.ids, 1)],
         (ARRAY['anthropic', 'google', 'mistral', 'openai'])[1 + g % 4],
         now() - random() * interval '30 days'
  FROM generate_series(1, $3::int) g,
       (SELECT array_agg(id) AS ids FROM instances WHERE id <> $1::uuid) o
) rows
ORDER BY created_at
"""


async def _seed(url: str, total: int) -> dict[str, Any]:
    await seed_instances(url, OTHER_INSTANCES + 1, customers=2)
    conn = await asyncpg.connect(url)
    try:
        target = await conn.fetchval(
            "SELECT id FROM instances WHERE customer_id = $1 ORDER BY hostname LIMIT 1", DEFAULT_CUSTOMER_ID
        )
        started = time.monotonic()
        await conn.execute(_FILL, target, TARGET_ROWS, total - TARGET_ROWS)
        await conn.execute("VACUUM ANALYZE llm_usage_events")
        seconds = time.monotonic() - started
        rows = await conn.fetchval("SELECT count(*) FROM llm_usage_events")
        size = await conn.fetchval("SELECT pg_size_pretty(pg_total_relation_size('llm_usage_events'))")
    finally:
        await conn.close()
    log(f"{rows} usage rows ({size}) in {seconds:.1f} s")
    return {"target": target, "rows": rows, "table_size": size, "fill_seconds": round(seconds, 1)}


async def _plans(url: str, target: uuid.UUID) -> dict[str, str]:
    conn = await asyncpg.connect(url)
    try:
        literal = _COUNT.replace("$1", f"'{target}'::uuid").replace("$2", f"{WINDOW}::float8")
        custom = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {literal}")
        await conn.execute(f"PREPARE usage_count(uuid, float8) AS {_COUNT}")
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        generic = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE usage_count('{target}', {WINDOW})")
    finally:
        await conn.close()
    return {"custom": "\n".join(r[0] for r in custom), "generic": "\n".join(r[0] for r in generic)}


async def _statement_alone(pool: asyncpg.Pool, target: uuid.UUID) -> dict[str, Any]:
    store = AsyncpgUsageEventStore(pool)
    for _ in range(20):
        await store.count_window(target, WINDOW)
    times = []
    for _ in range(200):
        started = time.perf_counter()
        count = await store.count_window(target, WINDOW)
        times.append((time.perf_counter() - started) * 1e3)
    assert count.count == TARGET_ROWS, count
    return {
        "p50_ms": round(median(times), 3),
        "p90_ms": round(quantile(times, 0.9), 3),
        "max_ms": round(max(times), 3),
        "count": count.count,
        "providers": list(count.providers),
    }


async def run(rounds: int = 3, seconds: int = 5) -> dict[str, Any]:
    token = secrets.token_urlsafe(18)
    load = {"before": loadavg()}
    out: dict[str, Any] = {
        "sizes": {},
        "load": load,
        "params": {"rounds": rounds, "seconds": seconds, "window_seconds": WINDOW},
    }
    async with (
        bench_database("usage4") as url4,
        bench_database("usage6") as url6,
        Stack() as stack,
    ):
        urls = dict(zip(SIZES, (url4, url6), strict=True))
        setups = {size: await _seed(url, size) for size, url in urls.items()}
        apis = {size: await stack.serve(api_server("smoke-serve", url, token)) for size, url in urls.items()}
        pools = {size: await asyncpg.create_pool(url, min_size=1, max_size=1) for size, url in urls.items()}
        try:
            for size in SIZES:
                setups[size]["plans"] = await _plans(urls[size], setups[size]["target"])
                out["sizes"][size] = {"setup": setups[size], "rounds": []}
            async with httpx.AsyncClient(timeout=10, headers={"Authorization": f"Bearer {token}"}) as client:
                for rnd in range(rounds):
                    for size in SIZES:
                        api, target = apis[size], setups[size]["target"]
                        endpoint = f"{api.url}{SMOKE}/instances/{target}/llm-events?window_seconds={WINDOW}"
                        body = (await client.get(endpoint)).json()
                        assert body["count"] == TARGET_ROWS, body
                        await wrk(endpoint, token, connections=1, seconds=1)  # warm-up, discarded
                        through_api = await wrk(endpoint, token, connections=1, seconds=seconds)
                        alone = await _statement_alone(pools[size], target)
                        body_after = (await client.get(endpoint)).json()
                        assert body_after["count"] == TARGET_ROWS, body_after
                        out["sizes"][size]["rounds"].append(
                            {"round": rnd + 1, "api": through_api, "sql": alone, "body": body_after}
                        )
                        log(
                            f"round {rnd + 1} 10^{len(str(size)) - 1}: API p50 {through_api['p50_ms']} ms "
                            f"p99 {through_api['p99_ms']} ms ({through_api['rps']:.0f}/s, non-2xx "
                            f"{through_api['non_2xx']}); statement p50 {alone['p50_ms']} ms"
                        )
        finally:
            for pool in pools.values():
                await pool.close()
    load["after"] = loadavg()
    for size in SIZES:
        out["sizes"][size]["setup"]["target"] = str(out["sizes"][size]["setup"]["target"])
    return out


def summarize(result: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    sizes = result["sizes"]
    small, big = (sizes[s] if s in sizes else sizes[str(s)] for s in SIZES)
    ratios = [b["api"]["p50_ms"] / s["api"]["p50_ms"] for b, s in zip(big["rounds"], small["rounds"], strict=True)]
    sql_ratios = [b["sql"]["p50_ms"] / s["sql"]["p50_ms"] for b, s in zip(big["rounds"], small["rounds"], strict=True)]
    summary: dict[str, Any] = {}
    rows = []
    for label, data, r, sr in (("10^4", small, None, None), ("10^6", big, ratios, sql_ratios)):
        runs = data["rounds"]
        s = {
            "rows": data["setup"]["rows"],
            "table_size": data["setup"]["table_size"],
            "api_p50_ms": round(median(x["api"]["p50_ms"] for x in runs), 2),
            "api_p50_rounds": [x["api"]["p50_ms"] for x in runs],
            "api_p99_ms": round(median(x["api"]["p99_ms"] for x in runs), 2),
            "api_rps_c1": round(median(x["api"]["rps"] for x in runs)),
            "sql_p50_ms": round(median(x["sql"]["p50_ms"] for x in runs), 3),
            "sql_p90_ms": round(median(x["sql"]["p90_ms"] for x in runs), 3),
            "ratio_api_p50_to_10e4": round(median(r), 2) if r else 1.0,
            "ratio_range": [round(min(r), 2), round(max(r), 2)] if r else [1.0, 1.0],
            "ratio_sql_p50_to_10e4": round(median(sr), 2) if sr else 1.0,
            "custom_plan": data["setup"]["plans"]["custom"],
            "generic_plan": data["setup"]["plans"]["generic"],
            "count_and_providers": [runs[-1]["body"]["count"], runs[-1]["body"]["providers"]],
        }
        summary[label] = s
        rows.append(
            [
                f"{label} ({s['table_size']})",
                s["api_p50_ms"],
                " / ".join(f"{x:.2f}" for x in s["api_p50_rounds"]),
                s["api_p99_ms"],
                s["api_rps_c1"],
                f"{s['ratio_api_p50_to_10e4']:.2f}" + (f" ({spread(r)})" if r else ""),
                s["sql_p50_ms"],
                s["sql_p90_ms"],
                f"{s['ratio_sql_p50_to_10e4']:.2f}",
            ]
        )
    text = table(
        [
            "rows in llm_usage_events",
            "API p50 ms (median)",
            "API p50 per round",
            "API p99 ms",
            "API req/s (c1)",
            "API p50 ratio to 10^4 (range)",
            "statement p50 ms",
            "statement p90 ms",
            "statement ratio to 10^4",
        ],
        rows,
    )
    text += "\n\nPlan at 10^6 rows (literal parameters):\n\n```\n" + summary["10^6"]["custom_plan"] + "\n```\n"
    text += "\nGeneric plan at 10^6 rows (what a prepared statement can switch to):\n\n```\n"
    text += summary["10^6"]["generic_plan"] + "\n```"
    summary["verdicts"] = {
        "p50_at_10e6_target_3ms": summary["10^6"]["api_p50_ms"] <= 3.0,
        "ratio_target_1.5": summary["10^6"]["ratio_api_p50_to_10e4"] <= 1.5,
        "index_used": "ix_llm_usage_events_window" in summary["10^6"]["custom_plan"]
        and "ix_llm_usage_events_window" in summary["10^6"]["generic_plan"],
    }
    return text, summary
