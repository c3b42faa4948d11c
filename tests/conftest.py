"""Fixtures shared by every suite: the test database (a fresh one per run) and the settings that point at it.

``SMOKE_TEST_DATABASE_URL`` names a PostgreSQL server to create the run's database on (CI: the local server);
without it the run starts an embedded PostgreSQL of its own in a new temporary directory (removed at the end), so a
bare machine passes too and two runs never share a server.
The tests marked ``redis`` start a ``redis-server`` of their own (no persistence, a free loopback port), or use the
Redis of ``SMOKE_TEST_REDIS_URL`` when it is set, touching only keys of their own queues there; no test flushes it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import asyncpg
import httpx
import psycopg
import pytest

from smoke.serving import free_port, serve_asgi
from smoke.settings import Settings
from smoke.simulators import create_cloud_simulator

DATA_TABLES = (
    "llm_usage_events",
    "instance_status_history",
    "agent_credentials",
    "instances",
    "provision_ledger",
)


@contextlib.contextmanager
def short_temp_dir(prefix: str) -> Iterator[Path]:
    """A new directory of this run's own, removed at the end; under ``/tmp`` when there is one, so that a unix
    socket in it (``<dir>/pgdata/.s.PGSQL.5432``) stays well under the 108 bytes a socket path may have."""
    parent = "/tmp" if os.access("/tmp", os.W_OK) else None
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _admin_url() -> Iterator[str]:
    if url := os.environ.get("SMOKE_TEST_DATABASE_URL"):
        yield url
        return
    from smoke.adapters.postgres.embedded import EmbeddedPostgres

    with short_temp_dir("smoke-pg-") as root:
        server = EmbeddedPostgres(root / "pgdata", database="postgres", delete=True)
        server.start()
        try:
            yield server.admin_url
        finally:
            server.stop()


def _with_database(url: str, name: str) -> str:
    base, sep, query = url.partition("?")
    return f"{base.rsplit('/', 1)[0]}/{name}{sep}{query}"


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A migrated, seeded database of its own for this run, dropped at the end."""
    from smoke.adapters.postgres.migrate import migrate, seed

    for admin_url in _admin_url():
        name = f"smoke_test_{secrets.token_hex(4)}"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = _with_database(admin_url, name)
        migrate(url)
        seed(url, Settings().customer_scope())
        yield url
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def clean_database(database_url: str) -> str:
    """The run's database with no instances, requests, usage or jobs (the seeded customer and catalog stay)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        saq_tables = conn.execute("SELECT to_regclass('saq_jobs') IS NOT NULL").fetchone()
        tables = [*DATA_TABLES, *(["saq_jobs"] if saq_tables and saq_tables[0] else [])]
        conn.execute(f"TRUNCATE {', '.join(tables)} CASCADE")
    return database_url


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        ops_bearer_token="test-ops-token", database_url=database_url, agent_token_secret="test-agent-secret"
    )


@dataclass(frozen=True)
class RedisServer:
    """The Redis the tests marked ``redis`` use; ``private`` when this run started it (nobody else's keys in it)."""

    url: str
    private: bool


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """``SMOKE_TEST_REDIS_URL`` when set (shared: never flushed, see ``redis_url``); otherwise a ``redis-server`` of
    this run's own on a free loopback port, without persistence, stopped at the end; skips, saying why, without both."""
    if url := os.environ.get("SMOKE_TEST_REDIS_URL"):
        if problem := _redis_problem(url):
            pytest.skip(f"SMOKE_TEST_REDIS_URL={url} does not answer ({problem}): the Redis queue tests need it")
        yield RedisServer(url, private=False)
        return
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("the Redis queue tests need redis-server on PATH (or a Redis named by SMOKE_TEST_REDIS_URL)")
    with short_temp_dir("smoke-redis-") as workdir, _private_redis(binary, workdir) as url:
        yield RedisServer(url, private=True)


@pytest.fixture
def redis_url(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The Redis URL for ``QUEUE_URL``, with a saq queue name of this test's own; only its keys are deleted after.

    The Redis may be shared (``SMOKE_TEST_REDIS_URL``): nothing else in it is read, written or flushed.
    """
    import redis

    from smoke.adapters import queue

    name = f"smoke-test-{secrets.token_hex(6)}"
    monkeypatch.setattr(queue, "QUEUE_NAME", name)  # read by make_saq_queue each time a stack starts
    yield redis_server.url
    client = redis.Redis.from_url(redis_server.url, socket_connect_timeout=5, decode_responses=True)
    try:
        # saq's keys of queue ``name``: its namespace, its jobs, and the abort flags of those jobs (keyed by job key)
        jobs = list(client.scan_iter(match=f"saq:job:{name}:*", count=1000))
        own = [*client.scan_iter(match=f"saq:{name}:*", count=1000), *jobs]
        own += [f"saq:abort:{job.removeprefix(f'saq:job:{name}:')}" for job in jobs]
        if own:
            client.delete(*own)
    finally:
        client.close()


def _redis_problem(url: str) -> str | None:
    """None when Redis at ``url`` answers PING, else what went wrong."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
    try:
        client.ping()
    except redis.exceptions.RedisError as error:
        return f"{type(error).__name__}: {error}"
    finally:
        client.close()
    return None


@contextlib.contextmanager
def _private_redis(binary: str, workdir: Path, attempts: int = 3) -> Iterator[str]:
    """``redis-server`` on 127.0.0.1 and a free port, no RDB/AOF, its files in ``workdir``; terminated at the end."""
    log = workdir / "redis.log"
    options = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir), "--logfile", str(log)]
    for _ in range(attempts):  # another process may take the free port before redis-server binds it
        log.unlink(missing_ok=True)
        port = free_port()
        process = subprocess.Popen(
            [binary, "--port", str(port), *options, "--daemonize", "no"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + 10
        while process.poll() is None and not _served_by(url, process.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if process.poll() is None and _served_by(url, process.pid):
            break
        _stop_process(process)
        if "Address already in use" not in (log.read_text() if log.exists() else ""):
            raise RuntimeError(f"redis-server did not start on port {port}: {log.read_text() if log.exists() else ''}")
    else:
        raise RuntimeError(f"redis-server found no free port in {attempts} attempts")
    try:
        yield url
    finally:
        _stop_process(process)


def _served_by(url: str, pid: int) -> bool:
    """Whether ``url`` is answered by the redis-server of process ``pid`` (not another one that took the port)."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
    try:
        info = cast("dict[str, Any]", client.info("server"))  # redis-py types a sync and an async answer alike
        return bool(info["process_id"] == pid)
    except redis.exceptions.RedisError:
        return False
    finally:
        client.close()


def _stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@pytest.fixture
async def db(clean_database: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the (cleaned) test database, to look at what the code under test stored."""
    conn = await asyncpg.connect(clean_database)
    yield conn
    await conn.close()


@pytest.fixture(scope="session")
async def cloud_url() -> AsyncIterator[str]:
    """The simulated Hetzner Cloud on loopback, fast: actions and boot take 0.1 s."""
    simulator = create_cloud_simulator(action_seconds=0.1, boot_seconds=0.1, token_delay_ms=5, seed=7)
    async with serve_asgi(simulator) as url:
        yield url


@pytest.fixture
async def cloud(cloud_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the simulator's base URL, reset (no servers, no faults) before the test."""
    async with httpx.AsyncClient(base_url=cloud_url, timeout=30) as client:
        (await client.post("/_sim/reset")).raise_for_status()
        yield client
