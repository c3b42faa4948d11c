"""/schema in a real browser with the network blocked: Swagger UI renders from what smoke serves, nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import expect

from smoke.api import create_app
from smoke.bootstrap import make_container
from smoke.serving import serve_asgi
from smoke.settings import Settings
from smoke.testing.providers import FakeAdaptersProvider
from tests.browser.conftest import OfflinePage, artifact

OPERATIONS = ["Smoke Provision", "Smoke Poll", "Smoke Status", "Smoke Delete", "Smoke Chat", "Smoke Llm Events"]


@pytest.fixture
async def api_url() -> AsyncIterator[str]:
    """The API on fakes, served by uvicorn on loopback: the docs need no database."""
    app = create_app(make_container(Settings(ops_bearer_token="docs-token"), FakeAdaptersProvider()))
    async with serve_asgi(app) as url:
        yield url


@pytest.mark.slow
@pytest.mark.parametrize("path", ["/schema", "/schema/swagger"])
async def test_swagger_ui_renders_every_operation_offline(api_url: str, offline: OfflinePage, path: str) -> None:
    await offline.page.goto(api_url + path)

    summaries = offline.page.locator(".opblock-summary-description")
    for operation in OPERATIONS:
        await expect(summaries.filter(has_text=operation).first).to_be_visible()
    await offline.page.screenshot(path=artifact(path.strip("/").replace("/", "-") + ".png"), full_page=True)
    assert offline.blocked == []


@pytest.mark.slow
async def test_an_operation_opens_with_its_description(api_url: str, offline: OfflinePage) -> None:
    await offline.page.goto(api_url + "/schema")

    await offline.page.locator(".opblock-summary", has_text="Smoke Provision").click()

    await expect(offline.page.locator(".opblock-description-wrapper").first).to_contain_text("Idempotent")
    assert offline.blocked == []
