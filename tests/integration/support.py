"""Helpers of the integration tests: waiting for a state, reading the simulator, running reconcile."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import httpx

from smoke.domain.services import Reconciler
from tests.integration.conftest import SMOKE


async def until(predicate: Any, timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Poll ``predicate`` (an async callable) until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := await predicate():
            return result
        await asyncio.sleep(interval)
    raise AssertionError(f"not true within {timeout} s: {predicate}")


async def status_of(api: httpx.AsyncClient, instance_id: str) -> str | None:
    """The instance's status, or None before the worker has inserted its row."""
    response = await api.get(f"{SMOKE}/instances/{instance_id}")
    return str(response.json()["status"]) if response.status_code == 200 else None


async def reaches(api: httpx.AsyncClient, instance_id: str, status: str, timeout: float = 30.0) -> None:
    async def there() -> bool:
        return await status_of(api, instance_id) == status

    await until(there, timeout)


async def servers(cloud: httpx.AsyncClient) -> list[dict[str, Any]]:
    return list((await cloud.get("/_sim/state")).json()["servers"])


async def reconcile(api: httpx.AsyncClient) -> dict[str, int]:
    """Run one reconcile pass through the app's container, as the cron would."""

    transport = api._transport
    assert isinstance(transport, httpx.ASGITransport)
    container = transport.app.state.dishka_container  # type: ignore[attr-defined]
    async with container() as scope:
        report = await (await scope.get(Reconciler)).reconcile()
    return dataclasses.asdict(report)
