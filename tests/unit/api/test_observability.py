from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator

import httpx
import pytest

from smoke.observability import configure_logging
from smoke.testing.fakes import FakeInstanceReader
from tests.unit.api.conftest import SMOKE

FORGED = "k\r\n2026-11-30T12:00:00Z [info     ] forged line\x1b[31m\u2028\u0085\x00\u202e"
"""What a client may put in a key or a path: a whole fake record after CR LF, an ANSI colour, U+2028, NEL, NUL, RLO."""
RAW_CONTROLS = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202e]")


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


def test_console_logs_escape_what_a_client_sent(restore_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "console")

    logging.getLogger("smoke.test").warning("poll of %s", FORGED, extra={"path": f"/by-key/{FORGED}"})

    output = capsys.readouterr().err
    assert output.count("\n") == 1
    assert RAW_CONTROLS.search(output) is None
    assert "poll of k\\r\\n2026-11-30T12:00:00Z [info     ] forged line\\x1b[31m\\u2028\\x85\\x00\\u202e" in output
    assert "path='/by-key/k\\\\r\\\\n" in output  # escaped, then quoted by the renderer (it has spaces)


def test_json_logs_escape_what_a_client_sent(restore_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")

    logging.getLogger("smoke.test").warning("poll of %s", FORGED)

    output = capsys.readouterr().err
    assert output.count("\n") == 1
    assert RAW_CONTROLS.search(output) is None
    assert json.loads(output)["event"] == f"poll of {FORGED}"


def test_a_traceback_on_the_console_is_indented_under_its_record(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", "console")

    try:
        raise ValueError(f"bad key {FORGED}\n2026-11-30T12:00:00Z [info     ] forged too")
    except ValueError:
        logging.getLogger("smoke.test").exception("unexpected")

    first, *rest = capsys.readouterr().err.rstrip("\n").split("\n")
    assert "unexpected" in first
    assert rest
    assert all(line.startswith("  ") for line in rest)


async def test_an_unexpected_error_on_a_hostile_path_is_logged_escaped(
    client: httpx.AsyncClient,
    restore_logging: None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken(*_: object) -> None:
        raise RuntimeError("the read side broke")

    monkeypatch.setattr(FakeInstanceReader, "poll", broken)
    configure_logging("INFO", "console")

    response = await client.get(f"{SMOKE}/instances/by-key/a%0D%0Aforged%1B%5B31m%E2%80%A8")

    first, *traceback = capsys.readouterr().err.rstrip("\n").split("\n")
    assert response.status_code == 500
    assert "unhandled error on GET /internal/v1/smoke/instances/by-key/a\\r\\nforged\\x1b[31m\\u2028" in first
    assert all(line.startswith("  ") for line in traceback)


@pytest.mark.parametrize(
    ("message", "args"),
    [
        ("Processing %s", ("Job<function: provision>",)),
        ("Finished %s", ("Job<function: provision>",)),
        ("Enqueuing %s", ("Job<function: provision>",)),
        ("Scheduled %s", (["cron:reconcile"],)),
        ("Worker starting: %s", ("<saq.queue.postgres.PostgresQueue object at 0x7f00>",)),
    ],
)
def test_saqs_line_per_job_state_is_debug_output(
    restore_logging: None, capsys: pytest.CaptureFixture[str], message: str, args: tuple[object, ...]
) -> None:
    configure_logging("INFO", "console")

    logging.getLogger("saq").info(message, *args)

    assert capsys.readouterr().err == ""
