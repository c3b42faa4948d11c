"""/ui on fakes: the sign-in with the ops token, its cookie, and what the page shows (tests/browser: for real)."""

from __future__ import annotations

import time

import httpx
import pytest

from smoke.api.ui.session import COOKIE_NAME, LIFETIME_SECONDS, session_cookie
from smoke.domain.errors import CloudError
from smoke.domain.services import Provisioner
from smoke.testing.providers import FakeAdaptersProvider
from tests.unit.api.conftest import TOKEN
from tests.unit.conftest import plant_request


@pytest.fixture
async def visitor(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """The API's client as a browser has it: no Authorization header, cookies kept."""
    client.headers.pop("Authorization")
    return client


async def signed_in(visitor: httpx.AsyncClient) -> httpx.AsyncClient:
    assert (await visitor.post("/ui/login", data={"token": TOKEN})).status_code == 303
    return visitor


async def test_without_a_session_the_page_asks_for_the_ops_token(visitor: httpx.AsyncClient) -> None:
    page = await visitor.get("/ui")

    assert page.status_code == 200
    assert 'name="token"' in page.text
    assert 'name="viewport"' in page.text


async def test_the_ops_token_signs_in_with_an_httponly_strict_cookie_that_is_not_the_token(
    visitor: httpx.AsyncClient,
) -> None:
    response = await visitor.post("/ui/login", data={"token": f" {TOKEN}\n"})

    assert (response.status_code, response.headers["location"]) == (303, "/ui")
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "samesite=strict" in cookie.lower()
    assert "Secure" not in cookie
    assert f"Max-Age={LIFETIME_SECONDS}" in cookie
    assert TOKEN not in cookie
    assert "Sign out" in (await visitor.get("/ui")).text


async def test_over_https_the_cookie_is_secure(visitor: httpx.AsyncClient) -> None:
    response = await visitor.post("https://api/ui/login", data={"token": TOKEN})

    assert "Secure" in response.headers["set-cookie"]


@pytest.mark.parametrize("token", ["", "wrong", TOKEN + "x", TOKEN[:-1], "é"])
async def test_a_wrong_token_gets_the_form_again_with_a_message_and_401(visitor: httpx.AsyncClient, token: str) -> None:
    response = await visitor.post("/ui/login", data={"token": token})

    assert response.status_code == 401
    assert "not the ops token" in response.text
    assert "set-cookie" not in response.headers


@pytest.mark.parametrize(
    "value",
    [
        "",
        "4102444800.forged",
        "4102444800",
        "9" * 5000 + ".x",
        session_cookie(TOKEN.encode(), time.time() - LIFETIME_SECONDS - 1, secure=False).value,
        session_cookie(b"another-token", time.time(), secure=False).value,
    ],
)
async def test_a_forged_expired_or_foreign_cookie_gets_the_form(visitor: httpx.AsyncClient, value: str) -> None:
    visitor.cookies.set(COOKIE_NAME, value)

    assert 'name="token"' in (await visitor.get("/ui")).text
    assert (await visitor.get("/ui/overview")).status_code == 401


async def test_signing_out_ends_the_session(visitor: httpx.AsyncClient) -> None:
    await signed_in(visitor)

    response = await visitor.post("/ui/logout")

    assert (response.status_code, response.headers["location"]) == (303, "/ui")
    assert 'name="token"' in (await visitor.get("/ui")).text


async def test_the_page_shows_instances_timelines_provision_times_failures_and_the_cap(
    visitor: httpx.AsyncClient, provisioner: Provisioner, fakes: FakeAdaptersProvider
) -> None:
    fakes.cloud.polls_until_running = 3
    running = plant_request(fakes, region="hel1")
    await provisioner.provision(running.instance_id)
    failed = plant_request(fakes)
    fakes.cloud.fail_next("create_server", CloudError("resource_unavailable", "cpx22 is sold out", provider="Hetzner"))
    await provisioner.provision(failed.instance_id)

    page = (await (await signed_in(visitor)).get("/ui")).text

    assert f'data-instance="{running.instance_id}" data-status="running"' in page
    assert f'data-instance="{failed.instance_id}" data-status="failed"' in page
    assert page.count('class="point"') == 1
    assert 'data-region="hel1"' in page
    assert '<td class="count">1</td><td class="reason">Hetzner: resource_unavailable: cpx22 is sold out</td>' in page
    assert '<span class="big" data-live="1">1</span> of 3' in page
    assert "+7.0 s" in page  # running at the third read of its server: 1, 3 and 7 s after the request (backoff)


async def test_no_secret_is_in_the_page(
    visitor: httpx.AsyncClient, provisioner: Provisioner, fakes: FakeAdaptersProvider
) -> None:
    entry = plant_request(fakes)
    await provisioner.provision(entry.instance_id)

    page = (await (await signed_in(visitor)).get("/ui")).text

    assert TOKEN not in page
    assert fakes.tokens.agent_token(entry.instance_id).token not in page


async def test_what_is_rendered_is_escaped(
    visitor: httpx.AsyncClient, provisioner: Provisioner, fakes: FakeAdaptersProvider
) -> None:
    fakes.cloud.fail_next("create_server", CloudError("invalid_input", "<script>alert(1)</script>"))
    await provisioner.provision(plant_request(fakes).instance_id)

    page = (await (await signed_in(visitor)).get("/ui")).text

    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


async def test_the_overview_alone_is_what_the_script_refreshes(visitor: httpx.AsyncClient) -> None:
    assert (await visitor.get("/ui/overview")).status_code == 401

    fragment = await (await signed_in(visitor)).get("/ui/overview")

    assert fragment.status_code == 200
    assert "<html" not in fragment.text
    assert "Live instances" in fragment.text


async def test_the_pages_allow_no_source_but_smoke_and_are_not_cached(visitor: httpx.AsyncClient) -> None:
    page = await visitor.get("/ui")

    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self'" in policy
    assert page.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(("name", "media_type"), [("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")])
async def test_the_script_and_the_stylesheet_are_served_by_smoke(
    visitor: httpx.AsyncClient, name: str, media_type: str
) -> None:
    response = await visitor.get(f"/ui/static/{name}")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media_type)


async def test_the_dashboard_is_not_in_the_openapi_document(visitor: httpx.AsyncClient) -> None:
    document = (await visitor.get("/schema/openapi.json")).json()

    assert not [path for path in document["paths"] if path.startswith("/ui")]
