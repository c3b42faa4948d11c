"""Headless Chromium driven by Playwright, offline: every request to anything but loopback is aborted and recorded.

Playwright's own browser download cannot be reached here, so the tests drive the system's Chromium (Debian's
``chromium``, which ``.ci/run`` installs when missing; ``SMOKE_TEST_CHROMIUM`` names another executable). Without one
they skip, saying so. Screenshots go to ``tests/artifacts/`` (git-ignored), CI's artifacts folder.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, BrowserContext, Page, Route, async_playwright

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
# What this machine's Chromium needs headless as root, and no calls home (the closed network refuses them, noisily).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    executable = os.environ.get("SMOKE_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.skip(
            "no Chromium executable: install Debian's chromium (apt-get install chromium) or set SMOKE_TEST_CHROMIUM"
        )
    return executable


@pytest.fixture
async def browser(chromium_executable: str) -> AsyncIterator[Browser]:
    """A new Chromium for the test: Playwright starts it with a fresh, temporary user-data directory."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium_executable, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


@dataclass
class OfflinePage:
    page: Page
    context: BrowserContext
    blocked: list[str] = field(default_factory=list)
    """Every URL off loopback the page tried to load: a CDN, a font, a favicon from elsewhere."""


@pytest.fixture
async def offline(browser: Browser) -> AsyncIterator[OfflinePage]:
    """A page of a new browser context (a laptop's screen) that reaches loopback only."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    offline = OfflinePage(await context.new_page(), context)

    async def loopback_only(route: Route) -> None:
        if urlsplit(route.request.url).hostname in LOOPBACK:
            await route.continue_()
        else:
            offline.blocked.append(route.request.url)
            await route.abort("internetdisconnected")

    await context.route("**/*", loopback_only)
    yield offline
    await context.close()


def artifact(name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name
