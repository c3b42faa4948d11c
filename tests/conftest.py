"""Fixtures shared by every suite: the test database (a fresh one per run) and the settings that point at it.

``SMOKE_TEST_DATABASE_URL`` names a PostgreSQL server to create the run's database on (CI: the local server);
without it the run starts an embedded PostgreSQL of its own in a new temporary directory (removed at the end), so a
bare machine passes too and two runs never share a server.
``SMOKE_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``) is used by the tests marked ``redis``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import psycopg
import pytest

from smoke.serving import serve_asgi
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


@pytest.fixture
def redis_url() -> str:
    """``SMOKE_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``), emptied; skips when Redis is unreachable."""
    import redis

    url = os.environ.get("SMOKE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        client.flushdb()
    except redis.exceptions.ConnectionError:
        pytest.skip(f"Redis is not reachable at {url}: the Redis queue tests need it (CI runs them)")
    finally:
        client.close()
    return url


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
