"""Bad input gets the documented 4xx in the FastAPI shapes of docs/api.md; nothing answers 5xx for client input."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from smoke.testing.providers import FakeAdaptersProvider
from tests.unit.api.conftest import SMOKE, provision_body

UNKNOWN_ID = "497f6eca-6276-4993-bfeb-53cbbbba6f08"


def only_error(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert isinstance(error, dict)
    return error


@pytest.mark.parametrize(
    ("body", "loc", "type_"),
    [
        (provision_body(customer_id="x"), ["body", "customer_id"], "extra_forbidden"),
        (provision_body(tenant_id="x"), ["body", "tenant_id"], "extra_forbidden"),
        ({**provision_body(), "": "x"}, ["body", ""], "extra_forbidden"),
        ({k: v for k, v in provision_body().items() if k != "tier_id"}, ["body", "tier_id"], "missing"),
        (provision_body(idempotency_key="k" * 256), ["body", "idempotency_key"], "string_too_long"),
        (provision_body(idempotency_key=""), ["body", "idempotency_key"], "string_too_short"),
        (provision_body(manifest_id="m" * 101), ["body", "manifest_id"], "string_too_long"),
        (provision_body(region_id="r" * 81), ["body", "region_id"], "string_too_long"),
        (provision_body(tier_id="t" * 81), ["body", "tier_id"], "string_too_long"),
        (provision_body(region_id="nowhere"), ["body", "region_id"], "unknown_catalog_id"),
        (provision_body(manifest_id="nothing"), ["body", "manifest_id"], "unknown_catalog_id"),
        (provision_body(tier_id="huge"), ["body", "tier_id"], "unknown_catalog_id"),
        ({**provision_body(), "tier_id": 5}, ["body", "tier_id"], "type_error"),
        ([], ["body"], "type_error"),
    ],
)
async def test_a_bad_provision_body_is_a_422_at_its_field_and_stores_nothing(
    client: httpx.AsyncClient, fakes: FakeAdaptersProvider, body: object, loc: list[str], type_: str
) -> None:
    error = only_error(await client.post(f"{SMOKE}/provision", json=body))

    assert (error["loc"], error["type"]) == (loc, type_)
    assert fakes.db.ledger == {}
    assert fakes.queue.enqueued == []


@pytest.mark.parametrize(
    ("content", "msg"),
    [
        (b"{not json", "Invalid JSON: object keys must be strings (byte 1)"),
        (b'{"idempotency_key": "k",}', "Invalid JSON: trailing comma in object (byte 24)"),
        (b"\xff\xfe", "Invalid JSON: invalid character (byte 0)"),
        (b'{"idempotency_key": "k"', "Invalid JSON: input data was truncated"),
        (b'{"idempotency_key": "\xed\xa0\x80"}', "Invalid JSON: invalid UTF-8 encoded string"),
        (
            b'{"idempotency_key": "\\ud800", "tier_id": "small"}',
            "Invalid JSON: unexpected end of escaped utf-16 surrogate pair (byte 27)",
        ),
        (b'{"input_tokens": 1e999}', "Invalid JSON: number out of range"),
        (b"[" * 60_000, "Invalid JSON: nested deeper than the decoder allows"),
        (b'{"a": ' * 10_000, "Invalid JSON: nested deeper than the decoder allows"),
    ],
    ids=[
        "malformed",
        "trailing comma",
        "not UTF-8",
        "truncated",
        "a UTF-8 surrogate",
        "a lone \\ud800",
        "1e999",
        "[ x 60000",
        "{ x 10000",
    ],
)
async def test_a_body_that_is_not_decodable_json_is_json_invalid_at_the_body(
    client: httpx.AsyncClient, content: bytes, msg: str
) -> None:
    error = only_error(await client.post(f"{SMOKE}/provision", content=content))

    assert error == {"loc": ["body"], "msg": msg, "type": "json_invalid"}


async def test_an_empty_body_is_missing(client: httpx.AsyncClient) -> None:
    error = only_error(await client.post(f"{SMOKE}/provision", content=b""))

    assert (error["loc"], error["type"]) == (["body"], "missing")


async def test_a_body_over_64_kib_is_413(client: httpx.AsyncClient) -> None:
    response = await client.post(f"{SMOKE}/provision", content=b" " * (64 * 1024 + 1))

    assert response.status_code == 413
    assert isinstance(response.json()["detail"], str)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"{SMOKE}/instances/not-a-uuid"),
        ("DELETE", f"{SMOKE}/instances/not-a-uuid"),
        ("GET", f"{SMOKE}/instances/not-a-uuid/llm-events"),
    ],
)
async def test_a_malformed_instance_id_is_422_at_the_path(client: httpx.AsyncClient, method: str, path: str) -> None:
    error = only_error(await client.request(method, path))

    assert error["loc"] == ["path", "instance_id"]


@pytest.mark.parametrize("window", ["0", "86401", "-5", "abc", "1.5"])
async def test_an_out_of_range_window_is_422_at_the_query(client: httpx.AsyncClient, window: str) -> None:
    error = only_error(await client.get(f"{SMOKE}/instances/{UNKNOWN_ID}/llm-events?window_seconds={window}"))

    assert error["loc"] == ["query", "window_seconds"]


async def test_an_over_long_key_in_the_poll_path_is_422(client: httpx.AsyncClient) -> None:
    error = only_error(await client.get(f"{SMOKE}/instances/by-key/{'k' * 256}"))

    assert error["loc"] == ["path", "idempotency_key"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"{SMOKE}/instances/{UNKNOWN_ID}"),
        ("DELETE", f"{SMOKE}/instances/{UNKNOWN_ID}"),
        ("GET", f"{SMOKE}/instances/{UNKNOWN_ID}/llm-events"),
    ],
)
async def test_an_unknown_instance_is_404(client: httpx.AsyncClient, method: str, path: str) -> None:
    response = await client.request(method, path)

    assert (response.status_code, response.json()) == (404, {"detail": "Instance not found"})


async def test_the_database_being_down_is_503(client: httpx.AsyncClient, fakes: FakeAdaptersProvider) -> None:
    fakes.readiness.down = ["database"]

    response = await client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["unavailable"] == ["database"]


async def test_an_unknown_route_is_a_json_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/nowhere")

    assert (response.status_code, response.json()) == (404, {"detail": "Not Found"})


@pytest.mark.parametrize("field", ["idempotency_key", "manifest_id", "region_id", "tier_id"])
async def test_a_nul_in_any_field_is_a_422_at_that_field(client: httpx.AsyncClient, field: str) -> None:
    error = only_error(await client.post(f"{SMOKE}/provision", json=provision_body(**{field: "a\x00b"})))

    assert (error["loc"], error["type"]) == (["body", field], "string_pattern_mismatch")
    assert "U+0000" in error["msg"]


async def test_a_nul_in_the_poll_path_is_a_422_at_the_path(client: httpx.AsyncClient) -> None:
    error = only_error(await client.get(f"{SMOKE}/instances/by-key/a%00b"))

    assert error == {
        "loc": ["path", "idempotency_key"],
        "msg": "String should not contain '/' (a key is one path segment) or U+0000",
        "type": "string_pattern_mismatch",
    }
