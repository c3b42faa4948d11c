"""/ui in a real browser against a real ``smoke up``: sign in once, then watch provisions happen without a reload.

``smoke up`` runs as a process (as ``tests/integration/test_up_command.py`` starts it) on the run's test database,
with the simulated cloud of this session for its Hetzner: the test sells out a server type there to make one
provision fail with the cloud's reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.async_api import expect

from smoke.serving import free_port
from tests.browser.conftest import OfflinePage, artifact

TOKEN = "browser-test-ops-token"
SIM_TOKEN = "sim-token"
SOLD_OUT = {"location": "hel1", "server_type": "cpx22"}  # the simulator's type for tier small


@dataclass(frozen=True)
class SmokeUp:
    url: str
    api: httpx.AsyncClient
    """A client of the smoke API, with the ops token."""


@pytest.fixture
async def smoke_up(
    tmp_path: Path, clean_database: str, cloud_url: str, cloud: httpx.AsyncClient
) -> AsyncIterator[SmokeUp]:
    """``smoke up`` on a free port, its database the run's (cleaned) one, its cloud the session's simulator."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "LOG_LEVEL": "WARNING",
        "DATABASE_URL": clean_database,
        "OPS_BEARER_TOKEN": TOKEN,
        "HETZNER_API_TOKEN": SIM_TOKEN,
        "HETZNER_API_URL": f"{cloud_url}/v1",
        "AGENT_URL_TEMPLATE": f"{cloud_url}/agents/{{provider_server_id}}",
        "PUBLIC_URL": url,
        "PROVISION_POLL_SECONDS": "0.2",
        "SMOKE_MAX_LIVE_INSTANCES": "7",
    }
    log = tmp_path / "smoke-up.log"
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "smoke",
            "up",
            "--port",
            str(port),
            cwd=tmp_path,
            env=environment,
            stdout=output,
            stderr=asyncio.subprocess.STDOUT,
        )
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as api:
            await _until_ready(api, process, log)
            api.headers["Authorization"] = f"Bearer {TOKEN}"
            yield SmokeUp(url, api)
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()
            await process.wait()


async def _until_ready(api: httpx.AsyncClient, process: asyncio.subprocess.Process, log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and process.returncode is None:
        with contextlib.suppress(httpx.TransportError):
            if (await api.get("/readyz")).status_code == 200:
                return
        await asyncio.sleep(0.2)
    raise AssertionError(f"smoke up did not become ready:\n{log.read_text()}")


async def provision(smoke: SmokeUp, key: str, region: str) -> str:
    body = {"idempotency_key": key, "manifest_id": "agent-default", "region_id": region, "tier_id": "small"}
    response = await smoke.api.post("/internal/v1/smoke/provision", json=body)
    response.raise_for_status()
    return str(response.json()["instance_id"])


async def sign_in(offline: OfflinePage, smoke: SmokeUp) -> None:
    page = offline.page
    await page.goto(smoke.url + "/ui")
    await page.fill("#token", "not-the-token")
    async with page.expect_response(smoke.url + "/ui/login") as refused:
        await page.click("button[type=submit]")
    assert (await refused.value).status == 401
    await expect(page.get_by_role("alert")).to_contain_text("not the ops token")

    await page.fill("#token", TOKEN)
    await page.click("button[type=submit]")
    await expect(page.get_by_role("heading", name="Live instances")).to_be_visible()


@pytest.mark.slow
async def test_the_dashboard_follows_provisions_live_and_says_why_one_failed(
    smoke_up: SmokeUp, cloud: httpx.AsyncClient, offline: OfflinePage
) -> None:
    page = offline.page
    await sign_in(offline, smoke_up)
    await page.evaluate("window.notReloaded = true")
    (await cloud.put("/_sim/faults", json={"hetzner": {"unavailable": [SOLD_OUT]}})).raise_for_status()

    refused = await provision(smoke_up, "browser-sold-out", "hel1")
    running = await provision(smoke_up, "browser-runs", "fsn1")

    await expect(page.locator(f'[data-instance="{running}"]')).to_have_attribute(
        "data-status", "running", timeout=30_000
    )
    failed = page.locator(f'[data-instance="{refused}"]')
    await expect(failed).to_have_attribute("data-status", "failed", timeout=30_000)
    await expect(failed.locator("p.reason")).to_contain_text("resource_unavailable")
    await expect(page.locator(".failures")).to_contain_text("resource_unavailable")
    await expect(page.locator('.chart[data-region="fsn1"] circle.point')).to_have_count(1)
    await expect(page.locator("[data-live]")).to_have_text("1")
    assert await page.evaluate("window.notReloaded") is True
    await page.screenshot(path=artifact("dashboard.png"), full_page=True)
    assert offline.blocked == []


@pytest.mark.slow
async def test_the_session_is_an_httponly_strict_cookie_and_the_page_holds_no_secret(
    smoke_up: SmokeUp, offline: OfflinePage
) -> None:
    await provision(smoke_up, "browser-secrets", "fsn1")
    await sign_in(offline, smoke_up)

    [cookie] = await offline.context.cookies()

    assert (cookie["httpOnly"], cookie["sameSite"], cookie["secure"]) == (True, "Strict", False)
    assert TOKEN not in cookie["value"]
    assert await offline.page.evaluate("document.cookie") == ""
    assert TOKEN not in await offline.page.content()
    await offline.page.reload()
    await expect(offline.page.get_by_role("heading", name="Live instances")).to_be_visible()  # asked once


@pytest.mark.slow
async def test_on_a_phone_the_page_fits_the_screen(smoke_up: SmokeUp, offline: OfflinePage) -> None:
    await offline.page.set_viewport_size({"width": 390, "height": 844})
    running = await provision(smoke_up, "browser-phone", "nbg1")
    await sign_in(offline, smoke_up)
    await expect(offline.page.locator(f'[data-instance="{running}"]')).to_have_attribute(
        "data-status", "running", timeout=30_000
    )

    overflow = await offline.page.evaluate("document.documentElement.scrollWidth - window.innerWidth")

    assert overflow <= 0
    await offline.page.screenshot(path=artifact("dashboard-phone.png"), full_page=True)
