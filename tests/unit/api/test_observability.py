from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import httpx
import pytest

from smoke.observability import configure_logging
from tests.unit.api.conftest import SMOKE


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


def test_json_logs_never_show_a_secret_or_a_bearer_token(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", "json", secrets=["s3cr3t-ops-token"])

    logging.getLogger("smoke.test").warning("calling with s3cr3t-ops-token and Authorization: Bearer abc.def")
    logging.getLogger("smoke.test").warning("headers", extra={"authorization": "Bearer zzz"})

    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert lines[0]["event"] == "calling with [REDACTED] and Authorization: Bearer [REDACTED]"
    assert lines[1]["authorization"] == "[REDACTED]"
    assert lines[0]["level"] == "warning"
    assert lines[0]["logger"] == "smoke.test"


async def test_every_response_carries_a_request_id_and_echoes_the_callers(client: httpx.AsyncClient) -> None:
    generated = await client.get(f"{SMOKE}/instances/by-key/k")
    echoed = await client.get(f"{SMOKE}/instances/by-key/k", headers={"X-Request-ID": "ci-42"})

    assert len(generated.headers["x-request-id"]) == 32
    assert echoed.headers["x-request-id"] == "ci-42"


async def test_metrics_count_requests_by_route_template(client: httpx.AsyncClient) -> None:
    await client.get(f"{SMOKE}/instances/by-key/some-key")

    body = (await client.get("/metrics")).text

    assert (
        'smoke_http_requests_total{method="GET",route="/internal/v1/smoke/instances/by-key/{idempotency_key}"' in body
    )
    assert "some-key" not in body
