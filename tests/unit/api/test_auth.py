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
    headers: dict[bytes, bytes] = {} if authorization is None else {b"Authorization": authorization.encode()}
    client.headers.pop("Authorization")

    response = await client.get(f"{SMOKE}/instances/by-key/k", headers=headers)

    assert response.status_code == 401
    assert response.json() == {"detail": "Not authenticated"}
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "after",
    [b"\xc2\xa0", b"\xa0", b"\xc2\x85", b"\x85", b"\xe2\x80\xa8", b"\x0b", b"\x0c"],
    ids=["U+00A0 (UTF-8)", "U+00A0 (Latin-1)", "U+0085 (UTF-8)", "U+0085 (Latin-1)", "U+2028", "VT", "FF"],
)
async def test_a_token_followed_by_anything_is_a_wrong_token(client: httpx.AsyncClient, after: bytes) -> None:
    response = await client.get(
        f"{SMOKE}/instances/by-key/k", headers={b"Authorization": f"Bearer {TOKEN}".encode() + after}
    )

    assert (response.status_code, response.json()) == (401, {"detail": "Not authenticated"})


async def test_only_one_space_separates_the_scheme_from_the_token(client: httpx.AsyncClient) -> None:
    response = await client.get(f"{SMOKE}/instances/by-key/k", headers={"Authorization": f"Bearer  {TOKEN}"})

    assert response.status_code == 401


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
