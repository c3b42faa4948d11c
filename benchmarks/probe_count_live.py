"""How the live-instance cap check of Smoke Provision grows with the ledger (a spot check, not one of the 5 figures).

    uv run --group bench python benchmarks/probe_count_live.py

``ProvisionLedger.count_live`` (the customer's ledger entries not yet released) runs inside every accepted
``POST /provision``, under the per-customer advisory lock (so provisions of the customer wait for each other). Here
the ledger holds 10^3, then 10^5 past requests whose instances are all soft-deleted and released (years of CI
runs; idempotency keys are never pruned), and the call is timed (5 warm-up + 30 timed, one unit of work).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
import uvloop
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from benchmarks.harness import bench_database, log, median, seed_instances, table, write_result
from smoke.adapters.postgres.stores import SqlAlchemyDatabase
from smoke.settings import Settings


async def main() -> int:
    rows = []
    out = {}
    for size in (1_000, 100_000):
        async with bench_database("countlive") as url:
            await seed_instances(url, size, customers=1, status="deleted")
            conn = await asyncpg.connect(url)
            await conn.execute("UPDATE instances SET deleted_at = now()")
            await conn.execute("UPDATE provision_ledger SET released_at = now()")
            await conn.execute("VACUUM ANALYZE")
            await conn.close()
            engine = create_async_engine("postgresql+asyncpg://" + url.split("://", 1)[1])
            database = SqlAlchemyDatabase(async_sessionmaker(engine), Settings().customer_scope())
            async with database.begin() as uow:
                for _ in range(5):
                    assert await uow.ledger.count_live() == 0
                times = []
                for _ in range(30):
                    started = time.perf_counter()
                    await uow.ledger.count_live()
                    times.append((time.perf_counter() - started) * 1e3)
            await engine.dispose()
        out[size] = round(median(times), 2)
        rows.append([f"{size:,}", out[size]])
        log(f"{size} ledger rows: count_live p50 {out[size]} ms")
    text = table(["ledger rows of the customer (all soft-deleted)", "count_live p50 ms"], rows)
    print(text)
    write_result("probe_count_live", {"count_live_p50_ms": out, "table": text})
    return 0


if __name__ == "__main__":
    raise SystemExit(uvloop.run(main()))
