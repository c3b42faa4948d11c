"""What the header timeout costs (``smoke.serving.HeaderTimeoutProtocol`` against uvicorn's own httptools protocol).

``uv run --group bench python benchmarks/bench_header_timeout.py [--rounds 3] [--seconds 5]``

Both serve ``benchmarks/apps/hello_asgi.py`` under uvicorn (uvloop, one process) and are loaded by wrk (-t1 -c32),
in interleaved rounds: with kept-alive connections (a timer armed and cancelled per request) and with
``Connection: close`` (a timer per connection as well). Prints the medians, the ratio to uvicorn's own protocol, and
the server's CPU per request; writes ``benchmarks/results/header_timeout.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import (
    Server,
    Stack,
    base_env,
    code_version,
    cpu_seconds,
    free_port,
    log,
    machine,
    median,
    parse_wrk,
    table,
    utc_now,
    uvicorn_argv,
    write_result,
)

PROTOCOLS = {"uvicorn httptools": "httptools", "smoke HeaderTimeoutProtocol": "smoke.serving:HeaderTimeoutProtocol"}
MODES = {"keep-alive": [], "Connection: close": ["-H", "Connection: close"]}


def _argv(protocol: str, port: int) -> list[str]:
    argv = uvicorn_argv("benchmarks.apps.hello_asgi:app", port)
    argv[argv.index("--http") + 1] = protocol
    return argv


async def _load(server: Server, url: str, extra: list[str], seconds: int) -> dict[str, Any]:
    argv = ["wrk", "-t1", "-c32", f"-d{seconds}s", "--latency", "--timeout", "5s", *extra, url]
    cpu_before = cpu_seconds(server.pids())
    proc = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=seconds + 30)
    result = parse_wrk(out.decode())
    result["cpu_us_per_request"] = (cpu_seconds(server.pids()) - cpu_before) / max(result["requests"], 1) * 1e6
    return result


async def run(rounds: int, seconds: int) -> dict[str, Any]:
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {m: {p: [] for p in PROTOCOLS} for m in MODES}
    async with Stack() as stack:
        servers = {}
        for name, protocol in PROTOCOLS.items():
            port = free_port()
            url = f"http://127.0.0.1:{port}/"
            servers[name] = (await stack.serve(Server(name, _argv(protocol, port), base_env(), url)), url)
        for round_ in range(rounds):
            for mode, extra in MODES.items():
                for name, (server, url) in servers.items():
                    result = await _load(server, url, extra, seconds)
                    log(f"round {round_ + 1} {mode} {name}: {result['rps']:.0f} rps")
                    runs[mode][name].append(result)
    return {"date": utc_now(), "machine": machine(), "code": code_version(), "runs": runs}


def summarize(raw: dict[str, Any]) -> str:
    rows = []
    for mode, by_protocol in raw["runs"].items():
        base = median(r["rps"] for r in by_protocol["uvicorn httptools"])
        for name, results in by_protocol.items():
            rps = median(r["rps"] for r in results)
            cpu = median(r["cpu_us_per_request"] for r in results)
            p99 = median(r["p99_ms"] for r in results)
            rows.append([mode, name, f"{rps:,.0f}", f"{rps / base:.3f}", f"{cpu:.0f}", f"{p99:.2f}"])
    return table(["connections", "protocol", "rps (median)", "÷ uvicorn", "server CPU µs/request", "p99 ms"], rows)


def main() -> None:
    import uvloop

    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    raw = uvloop.run(run(args.rounds, args.seconds))
    write_result("header_timeout", raw)
    print(summarize(raw))


if __name__ == "__main__":
    main()
