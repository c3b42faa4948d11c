"""The stack under test (API on a loopback port, saq worker, simulated cloud) and the audit of what it left.

``audit`` is the checker every fault row ends with: it compares the provision ledger, the instance rows and the
simulated cloud's servers, and counts what must be zero: lost requests, duplicated servers, orphaned servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import IO, Any

import asyncpg
import httpx
from dishka import AsyncContainer
from dishka.provider import BaseProvider

from smoke.api import create_app
from smoke.bootstrap import make_container
from smoke.domain.services import Reconciler
from smoke.serving import free_port, serve_asgi
from smoke.settings import Settings
from smoke.worker import running_worker
from tests.integration.conftest import SIM_TOKEN, SMOKE, provision_body
from tests.integration.conftest import stack_settings as integration_stack_settings
from tests.integration.support import status_of, until

__all__ = (
    "SIM_TOKEN",
    "SMOKE",
    "Audit",
    "Stack",
    "audit",
    "provision_body",
    "served_stack",
    "start_worker_process",
    "status_of",
    "until",
    "wait_for_status",
)


def stack_settings(settings: Settings, cloud_url: str, **changes: Any) -> Settings:
    """The integration suite's stack settings, with room for the bursts and the slow clouds of the fault rows."""
    roomy = integration_stack_settings(settings, cloud_url).replace(
        provision_timeout_seconds=120, max_live_instances=200
    )
    return roomy.replace(**changes)


@dataclass
class Stack:
    """A client of the API (authenticated), the app's container and the settings it runs on."""

    api: httpx.AsyncClient
    container: AsyncContainer
    settings: Settings
    url: str

    async def reconcile(self) -> dict[str, int]:
        """One reconcile pass through the app's container, as the cron would run it."""
        async with self.container() as scope:
            report = await (await scope.get(Reconciler)).reconcile()
        return dataclasses.asdict(report)


@contextlib.asynccontextmanager
async def served_stack(
    settings: Settings, *overrides: BaseProvider, worker: bool = True, port: int | None = None
) -> AsyncIterator[Stack]:
    """The API on a loopback port (agents report usage to it) and, unless ``worker`` is False, a worker in-process."""
    port = port or free_port()
    configured = settings.replace(public_url=f"http://127.0.0.1:{port}")
    container = make_container(configured, *overrides)
    async with contextlib.AsyncExitStack() as stack:
        url = await stack.enter_async_context(serve_asgi(create_app(container), port=port))
        if worker:
            await stack.enter_async_context(running_worker(container, configured))
        client = await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=30))
        client.headers["Authorization"] = f"Bearer {configured.ops_bearer_token}"
        yield Stack(client, container, configured, url)


async def wait_for_status(
    api: httpx.AsyncClient, instance_ids: Iterable[str], status: str, timeout: float = 60.0
) -> dict[str, float]:
    """Wait until every instance has ``status``; return when each got there (``time.monotonic()``)."""
    pending, reached = set(instance_ids), {}
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for instance_id in list(pending):
            if await status_of(api, instance_id) == status:
                reached[instance_id] = time.monotonic()
                pending.discard(instance_id)
        if pending:
            await asyncio.sleep(0.05)
    if pending:
        states = {i: await status_of(api, i) for i in sorted(pending)}
        raise AssertionError(f"not {status} within {timeout} s: {states}")
    return reached


@dataclass(frozen=True)
class Audit:
    """What the ledger, the instance rows and the cloud say after a scenario."""

    requests: int
    """Accepted provision requests (ledger entries)."""
    instances: int
    """Instance rows."""
    servers: int
    """Servers at the (simulated) cloud labelled ``managed-by=smoke``."""
    statuses: dict[str, int]
    duplicated: int
    """Servers beyond the first for one instance."""
    orphaned: int
    """Servers whose instance is not live (soft-deleted, failed, unknown)."""
    rows_without_request: int
    servers_per_instance: dict[str, int]

    def figures(self) -> dict[str, Any]:
        return {"duplicated": self.duplicated, "orphaned": self.orphaned, "servers": self.servers}


async def audit(db: asyncpg.Connection, cloud: httpx.AsyncClient) -> Audit:
    ledger = {row["instance_id"] for row in await db.fetch("SELECT instance_id FROM provision_ledger")}
    rows = await db.fetch("SELECT id, status, deleted_at FROM instances")
    live = {row["id"] for row in rows if row["deleted_at"] is None and row["status"] != "failed"}
    servers = [
        s for s in (await cloud.get("/_sim/state")).json()["servers"] if s["labels"].get("managed-by") == "smoke"
    ]
    per_instance = Counter(str(s["labels"].get("smoke-instance-id")) for s in servers)
    orphaned = sum(1 for s in servers if _uuid(s["labels"].get("smoke-instance-id")) not in live)
    return Audit(
        requests=len(ledger),
        instances=len(rows),
        servers=len(servers),
        statuses=dict(Counter(str(row["status"]) for row in rows)),
        duplicated=sum(n - 1 for n in per_instance.values()),
        orphaned=orphaned,
        rows_without_request=sum(1 for row in rows if row["id"] not in ledger),
        servers_per_instance=dict(per_instance),
    )


def _uuid(value: object) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def worker_environment(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a ``smoke worker`` process on ``settings``."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": settings.database_url or "",
        "HETZNER_API_URL": settings.hetzner_api_url,
        "HETZNER_API_TOKEN": settings.hetzner_api_token or "",
        "AGENT_TOKEN_SECRET": settings.agent_token_secret or "",
        "AGENT_URL_TEMPLATE": settings.agent_url_template,
        "PUBLIC_URL": settings.public_url,
        "PROVISION_POLL_SECONDS": str(settings.provision_poll_seconds),
        "PROVISION_TIMEOUT_SECONDS": str(settings.provision_timeout_seconds),
        "JOB_HEARTBEAT_SECONDS": str(settings.job_heartbeat_seconds),
        "QUEUE_SWEEP_SECONDS": str(settings.queue_sweep_seconds),
        "LOG_LEVEL": "WARNING",
    } | extra


def start_worker_process(settings: Settings, log: IO[bytes] | None = None, **extra: str) -> subprocess.Popen[bytes]:
    """``python -m smoke worker`` on ``settings``, its output to ``log`` (default: discarded); the caller kills it."""
    output: IO[bytes] | int = log if log is not None else subprocess.DEVNULL
    return subprocess.Popen(
        [sys.executable, "-m", "smoke", "worker"],
        env=worker_environment(settings, **extra),
        stdout=output,
        stderr=output,
    )
