"""Run smoke's benchmarks: ``uv run --group bench python benchmarks/run.py {all,read,chat,usage,provision,...}``.

The subcommands: ``all``, ``read``, ``chat``, ``usage``, ``provision``, ``hetzner_budget``.

Each subcommand creates its own database(s) on the local PostgreSQL (``BENCH_PG_URL``, default
``postgresql://postgres@127.0.0.1:5432/postgres``), starts the servers it measures as subprocesses, prints a
Markdown table and writes the raw figures to ``benchmarks/results/<name>.json``; then it stops what it started
and drops its databases. ``provision`` also measures the footprint (figure 5) of the API and worker it drove;
``hetzner_budget`` counts the Hetzner requests of a cycle and of 30 provisions on a 300-request bucket.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import uvloop

from benchmarks import bench_chat, bench_hetzner_budget, bench_provision, bench_read, bench_usage
from benchmarks.harness import code_version, log, machine, service_versions, utc_now, write_result


async def _one(name: str, args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    header = {
        "benchmark": name,
        "date": utc_now(),
        "machine": machine(),
        "services": await service_versions(),
        "code": code_version(),
    }
    if name == "read":
        raw = await bench_read.run(rounds=args.rounds, seconds=args.seconds)
        text, summary = bench_read.summarize(raw)
    elif name == "chat":
        raw = await bench_chat.run(runs=args.chat_runs, latency_rounds=args.chat_rounds)
        text, summary = bench_chat.summarize(raw)
    elif name == "usage":
        raw = await bench_usage.run(rounds=args.rounds)
        text, summary = bench_usage.summarize(raw)
    elif name == "provision":
        raw = await bench_provision.run(rounds=args.provision_rounds, count=args.provisions)
        text, summary = bench_provision.summarize(raw)
    elif name == "hetzner_budget":
        raw = await bench_hetzner_budget.run()
        text, summary = bench_hetzner_budget.summarize(raw)
    else:
        raise ValueError(name)
    elapsed = round(time.monotonic() - started, 1)
    payload = {**header, "elapsed_s": elapsed, "summary": summary, "raw": raw}
    write_result(name, payload)
    print(f"\n## {name}  ({header['date']}, {elapsed} s)\n\n{text}\n", flush=True)
    return payload


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("benchmark", choices=["all", "read", "chat", "usage", "provision", "hetzner_budget"])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--seconds", type=int, default=5, help="read: seconds of each measured wrk run (default 5)")
    parser.add_argument("--chat-runs", type=int, default=30, help="chat: throughput runs per target (default 30)")
    parser.add_argument("--chat-rounds", type=int, default=12, help="chat: latency rounds per relay (default 12)")
    parser.add_argument("--provisions", type=int, default=200, help="provision: provisions per run (default 200)")
    parser.add_argument("--provision-rounds", type=int, default=2, help="provision: rounds (default 2)")
    args = parser.parse_args(argv)
    names = ["read", "chat", "usage", "provision", "hetzner_budget"] if args.benchmark == "all" else [args.benchmark]
    for name in names:
        log(f"--- {name}")
        await _one(name, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(uvloop.run(main()))
