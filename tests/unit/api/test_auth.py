from __future__ import annotations

import httpx
import pytest

from tests.unit.api.conftest import SMOKE, TOKEN


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Bearer wrong", f"Basic {TOKEN}", f"bearer{TOKEN}", f"Bearer {TOKEN}x", "Bearer é"],
)
async def test_every_authentication_failure_gets_the_same_401(
    client: httpx.AsyncClient, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization.encode()}
    client.headers.pop("Authorization")

    response = await client.get(f"{SMOKE}/instances/by-key/k", headers=headers)

    assert response.status_code == 401
    assert response.json() == {"detail": "Not authenticated"}
    assert response.headers["www-authenticate"] == "Bearer"


async def test_the_scheme_is_case_insensitive(client: httpx.AsyncClient) -> None:
    response = await client.get(f"{SMOKE}/instances/by-key/k", headers={"Authorization": f"bearer {TOKEN}"})

    assert response.status_code == 200


async def test_authentication_is_checked_before_the_body(client: httpx.AsyncClient) -> None:
    client.headers.pop("Authorization")

    response = await client.post(f"{SMOKE}/provision", content=b"{broken")

    assert response.status_code == 401


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/schema/openapi.json"])
async def test_health_and_the_schema_need_no_token(client: httpx.AsyncClient, path: str) -> None:
    client.headers.pop("Authorization")

    assert (await client.get(path)).status_code == 200
