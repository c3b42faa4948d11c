"""What every benchmark shares: throwaway databases, server subprocesses, wrk, CPU and memory of processes, stats.

Everything here is bounded: each wait has a timeout, each load run a duration, and every process and database a
benchmark starts is stopped or dropped on the way out (``Stack`` is an ``AsyncExitStack``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PG_ADMIN_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_BASE_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")
SMOKE = "/internal/v1/smoke"
SIM_TOKEN = "sim-token"
CLK_TCK = os.sysconf("SC_CLK_TCK")
LOG_DIR = Path(tempfile.mkdtemp(prefix="smoke-bench-"))


# ---------------------------------------------------------------- ports, stats, output


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


def quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile (q in [0, 1])."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q
    low, high = int(pos), min(int(pos) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def spread(values: Sequence[float], digits: int = 2) -> str:
    return f"{min(values):.{digits}f}-{max(values):.{digits}f}"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table (what the doc shows and what the scripts print)."""
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def write_result(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=1, default=str) + "\n")
    log(f"wrote {path.relative_to(ROOT)}")
    return path


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def machine() -> dict[str, Any]:
    """nproc, CPU model, RAM, kernel, and the versions that matter."""
    import importlib.metadata as md

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))  # type: ignore[union-attr]
    versions = {}
    for dist in (
        "litestar",
        "msgspec",
        "dishka",
        "asyncpg",
        "sqlalchemy",
        "advanced-alchemy",
        "saq",
        "psycopg",
        "redis",
        "httpx",
        "uvicorn",
        "uvloop",
        "httptools",
        "granian",
        "fastapi",
        "pydantic",
    ):
        with contextlib.suppress(md.PackageNotFoundError):
            versions[dist] = md.version(dist)
    if shutil.which("wrk") is not None:  # only the read benchmark needs it
        wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
        versions["wrk"] = (wrk.stdout + wrk.stderr).split("Copyright")[0].strip()
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "ram_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": versions,
    }


def code_version() -> dict[str, Any]:
    """The commit measured, and the files under src/ that differed from it (others may be editing them)."""
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, check=False
    )
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "src"], capture_output=True, text=True, cwd=ROOT, check=False
    )
    return {"commit": head.stdout.strip(), "src_changes": dirty.stdout.split("\n")[:-1]}


async def service_versions() -> dict[str, str]:
    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        pg = await conn.fetchval("SHOW server_version")
        shared_buffers = await conn.fetchval("SHOW shared_buffers")
    finally:
        await conn.close()
    redis_version = "unreachable"
    with contextlib.suppress(Exception):
        import redis.asyncio as redis

        client = redis.Redis.from_url(REDIS_BASE_URL)
        redis_version = (await client.info("server"))["redis_version"]
        await client.aclose()
    return {"postgresql": f"{pg} (shared_buffers={shared_buffers}, TCP 127.0.0.1)", "redis": redis_version}


# ---------------------------------------------------------------- databases


def db_url(name: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


@contextlib.asynccontextmanager
async def bench_database(label: str, *, seed: bool = True) -> AsyncIterator[str]:
    """A fresh database ``smoke_bench_<label>_<random>``, migrated (and seeded); dropped on exit."""
    from smoke.adapters.postgres.migrate import migrate
    from smoke.adapters.postgres.migrate import seed as seed_catalog
    from smoke.settings import Settings

    name = f"smoke_bench_{label}_{secrets.token_hex(3)}"
    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = db_url(name)
    log(f"database {name} created")
    try:
        await asyncio.to_thread(migrate, url)
        if seed:
            await asyncio.to_thread(seed_catalog, url, Settings().customer_scope())
        yield url
    finally:
        admin = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
        log(f"database {name} dropped")


async def seed_instances(url: str, count: int, *, customers: int = 50, status: str = "running") -> None:
    """``count`` instances (with their ledger rows) spread over ``customers`` customers, the smoke one included."""
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO customers (id, name) SELECT gen_random_uuid(), 'bench-' || lpad(g::text, 4, '0') "
                "FROM generate_series(1, $1) g",
                customers - 1,
            )
            await conn.execute(
                "INSERT INTO tenants (id, customer_id, name) SELECT gen_random_uuid(), id, 'bench' FROM customers "
                "WHERE name LIKE 'bench-%'"
            )
            await conn.execute(
                "INSERT INTO subscriptions (id, tenant_id, plan) SELECT gen_random_uuid(), t.id, 'bench' "
                "FROM tenants t JOIN customers c ON c.id = t.customer_id WHERE c.name LIKE 'bench-%'"
            )
            await conn.execute(
                """
                CREATE TEMP TABLE bench_gen ON COMMIT DROP AS
                WITH owners AS (
                  SELECT c.id AS customer_id, t.id AS tenant_id, s.id AS subscription_id,
                         row_number() OVER (ORDER BY c.name) - 1 AS n
                  FROM customers c JOIN tenants t ON t.customer_id = c.id JOIN subscriptions s ON s.tenant_id = t.id
                )
                SELECT gen_random_uuid() AS id, o.customer_id, o.tenant_id, o.subscription_id, g
                FROM generate_series(0, $1 - 1) g JOIN owners o ON o.n = g % (SELECT count(*) FROM owners)
                """.replace("$1", str(int(count)))
            )
            await conn.execute(
                "INSERT INTO provision_ledger (customer_id, idempotency_key, fingerprint, instance_id, task_id, "
                "manifest_id, region_id, tier_id) SELECT customer_id, 'bench-' || g, repeat('0', 64), id, "
                "'provision:' || id, 'agent-default', 'fsn1', 'small' FROM bench_gen"
            )
            await conn.execute(
                "INSERT INTO instances (id, customer_id, tenant_id, subscription_id, hostname, status, manifest_id, "
                "region_id, tier_id, created_at) SELECT id, customer_id, tenant_id, subscription_id, "
                "'bench-' || g, $1, 'agent-default', 'fsn1', 'small', now() FROM bench_gen",
                status,
            )
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


async def pg_backend_pids(url: str) -> list[int]:
    name = url.rpartition("/")[2]
    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", name)
    finally:
        await conn.close()
    return [row["pid"] for row in rows]


# ---------------------------------------------------------------- processes


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def process_tree(pid: int) -> list[int]:
    tree, found, todo = _children(), [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(tree.get(current, []))
    return found


def cpu_seconds(pids: Iterable[int]) -> float:
    """utime + stime of ``pids`` (not of their children), from procfs."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def memory_mb(pids: Iterable[int]) -> dict[str, float]:
    """Summed VmRSS (resident now) and VmHWM (peak resident) of ``pids``, in MB (10^6 bytes)."""
    rss = hwm = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            status = Path(f"/proc/{pid}/status").read_text()
            rss += int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
            hwm += int(re.search(r"VmHWM:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    return {"rss_mb": round(rss * 1024 / 1e6, 1), "peak_rss_mb": round(hwm * 1024 / 1e6, 1)}


@dataclass
class Server:
    """A subprocess we started (in its own session, so that stopping it stops its workers too)."""

    name: str
    argv: list[str]
    env: dict[str, str]
    url: str | None = None
    ready_path: str = "/"
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(default_factory=Path)

    async def start(self, timeout: float = 30.0) -> Server:  # noqa: ASYNC109
        self.log_path = LOG_DIR / f"{self.name}-{secrets.token_hex(2)}.log"
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(  # noqa: ASYNC220 - a plain fork/exec, returns at once
                self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
            )
        if self.url is not None:
            await self._wait_ready(timeout)
        return self

    async def _wait_ready(self, timeout: float) -> None:  # noqa: ASYNC109
        assert self.proc is not None
        assert self.url is not None
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    await client.get(self.url + self.ready_path)
                    return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.name} not answering on {self.url} after {timeout} s:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def pids(self) -> list[int]:
        return process_tree(self.pid)

    async def stop(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)  # the group of the process we started, by its id
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110 - a child, not an event
            await asyncio.sleep(0.05)
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


class Stack(contextlib.AsyncExitStack):
    async def serve(self, server: Server, timeout: float = 30.0) -> Server:  # noqa: ASYNC109
        self.push_async_callback(server.stop)
        return await server.start(timeout)


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMOKE_", "DATABASE_URL", "QUEUE_URL"))}
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra)
    return env


def uvicorn_argv(module: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        module,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--workers",
        "1",
        "--no-access-log",
        "--log-level",
        "warning",
        "--lifespan",
        "on",
    ]


def smoke_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "smoke", *args]


AGENT_TOKEN_SECRET = "bench-agent-secret-" + "x" * 16


def smoke_env(database_url: str, token: str, **extra: str) -> dict[str, str]:
    return base_env(DATABASE_URL=database_url, OPS_BEARER_TOKEN=token, AGENT_TOKEN_SECRET=AGENT_TOKEN_SECRET, **extra)


BASELINE_REF = os.environ.get("BENCH_BASELINE_REF", "main")


@functools.cache
def baseline_source() -> tuple[str, Path]:
    """The ``src/`` of the commit this branch started from (``git merge-base HEAD main``), extracted once.

    The "at main" configurations run it (``PYTHONPATH`` first, before the installed project), so the code before
    this round's changes is measured in the same run, on the same machine, as the code after them.
    """
    base = subprocess.run(
        ["git", "merge-base", "HEAD", BASELINE_REF], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout.strip()
    dest = LOG_DIR / f"baseline-{base[:8]}"
    if not dest.exists():
        dest.mkdir(parents=True)
        archive = subprocess.run(["git", "archive", base, "src"], capture_output=True, cwd=ROOT, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return base[:8], dest / "src"


def api_server(kind: str, database_url: str, token: str, *, at_baseline: bool = False, **extra: str) -> Server:
    """The smoke API: ``smoke-serve`` (the shipped ``smoke serve``) or ``uvicorn`` (a command line on the same app).

    ``at_baseline``: the code of ``baseline_source()`` (main, before this round's changes) instead of this tree's.
    """
    port = free_port()
    env = smoke_env(database_url, token, PUBLIC_URL=f"http://127.0.0.1:{port}", **extra)
    name = f"smoke-api-{kind}"
    if at_baseline:
        commit, src = baseline_source()
        env["PYTHONPATH"] = f"{src}{os.pathsep}{env['PYTHONPATH']}"
        name += f"-at-{commit}"
    if kind == "smoke-serve":
        argv = smoke_argv("serve", "--host", "127.0.0.1", "--port", str(port))
    elif kind == "uvicorn":
        argv = uvicorn_argv("benchmarks.apps.smoke_api:app", port)
    else:
        raise ValueError(kind)
    return Server(name, argv, env, url=f"http://127.0.0.1:{port}", ready_path="/healthz")


def simulate_cloud_server(name: str, *flags: str) -> Server:
    """``smoke simulate-cloud`` on a free loopback port with ``flags``, logging warnings only."""
    port = free_port()
    argv = smoke_argv("simulate-cloud", "--host", "127.0.0.1", "--port", str(port), *flags)
    return Server(name, argv, base_env(LOG_LEVEL="WARNING"), url=f"http://127.0.0.1:{port}", ready_path="/_sim/state")


def simulator_server(*, token_delay_ms: int = 0) -> Server:
    flags = ("--action-seconds", "0", "--boot-seconds", "0", "--token-delay-ms", str(token_delay_ms))
    return simulate_cloud_server("simulator", *flags)


def cloud_env(simulator: Server, **extra: str) -> dict[str, str]:
    """Settings that point the API and the worker at the simulated cloud."""
    assert simulator.url is not None
    return {
        "HETZNER_API_URL": f"{simulator.url}/v1",
        "HETZNER_API_TOKEN": SIM_TOKEN,
        "AGENT_URL_TEMPLATE": f"{simulator.url}/agents/{{provider_server_id}}",
        "SMOKE_MAX_LIVE_INSTANCES": "100000",
        "PROVISION_POLL_SECONDS": "0.1",
        **extra,
    }


def worker_server(database_url: str, token: str, public_url: str, **extra: str) -> Server:
    env = smoke_env(database_url, token, PUBLIC_URL=public_url, **extra)
    return Server("smoke-worker", smoke_argv("worker"), env)


# ---------------------------------------------------------------- wrk

_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise ValueError(text)
    return float(match.group(1)) * _UNIT[match.group(2)]


def parse_wrk(output: str) -> dict[str, Any]:
    result: dict[str, Any] = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))}  # type: ignore[union-attr]
    result["requests"] = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    for pct in ("50", "75", "90", "99"):
        match = re.search(rf"^\s+{pct}%\s+(\S+)", output, re.M)
        if match:
            result[f"p{pct}_ms"] = round(_ms(match.group(1)), 3)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    result["non_2xx"] = int(non2xx.group(1)) if non2xx else 0
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    result["socket_errors"] = sum(int(x) for x in errors.groups()) if errors else 0
    return result


async def wrk(url: str, token: str, *, connections: int, seconds: int, threads: int = 1) -> dict[str, Any]:
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "--timeout",
        "5s",
        "-H",
        f"Authorization: Bearer {token}",
        url,
    ]
    proc = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=seconds + 30)
    text = out.decode()
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed: {text}")
    return parse_wrk(text)


async def measured_wrk(
    url: str, token: str, server: Server, database_url: str, *, connections: int, seconds: int
) -> dict[str, Any]:
    """wrk, plus CPU seconds of the server's processes and of its PostgreSQL backends over the run, per request."""
    server_pids = server.pids()
    backends = await pg_backend_pids(database_url)
    cpu0, db0 = cpu_seconds(server_pids), cpu_seconds(backends)
    result = await wrk(url, token, connections=connections, seconds=seconds)
    cpu1, db1 = cpu_seconds(server.pids()), cpu_seconds(backends)
    requests = max(result["requests"], 1)
    result["server_cpu_pct"] = round(100 * (cpu1 - cpu0) / seconds, 1)
    result["server_cpu_us_per_req"] = round(1e6 * (cpu1 - cpu0) / requests, 1)
    result["pg_cpu_us_per_req"] = round(1e6 * (db1 - db0) / requests, 1)
    result["pg_backends"] = len(backends)
    return result


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


# ---------------------------------------------------------------- the provisioning pipeline, end to end


def provision_body(key: str) -> dict[str, str]:
    return {"idempotency_key": key, "manifest_id": "agent-default", "region_id": "fsn1", "tier_id": "small"}


async def provision_and_wait(api_url: str, token: str, *, timeout: float = 60.0) -> uuid.UUID:  # noqa: ASYNC109
    """Provision one instance through the API and wait (bounded) until it is ``running``."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=10) as client:
        response = await client.post(f"{SMOKE}/provision", json=provision_body(f"bench-{secrets.token_hex(4)}"))
        response.raise_for_status()
        instance_id = uuid.UUID(response.json()["instance_id"])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = await client.get(f"{SMOKE}/instances/{instance_id}")
            if status.status_code == 200 and status.json()["status"] == "running":
                return instance_id
            await asyncio.sleep(0.05)
    raise TimeoutError(f"instance {instance_id} not running after {timeout} s")
