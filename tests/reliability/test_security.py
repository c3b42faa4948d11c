"""Rows 13 and 14 of the test plan: authentication, secret hygiene, cross-customer access, oversized bodies.

Secret hygiene runs a whole scenario (provision under Hetzner faults, chat, a chat failing mid-stream, an agent
down, usage reports with good and bad tokens, bad ops tokens, delete, delete while provisioning, reconcile) with
every logger at DEBUG, then looks for the secrets in every log record (message, arguments, traceback), every saq
job and worker-stats row, every row of the smoke tables, every response body and the OpenAPI document.
The secrets are distinctive random strings, so a hit is a leak, not a coincidence.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from smoke.adapters.postgres.migrate import seed_customer
from smoke.adapters.tokens import HmacTokenIssuer
from smoke.domain.models import CustomerScope
from smoke.serving import serve_asgi
from smoke.settings import Settings
from smoke.simulators import create_cloud_simulator
from tests.reliability import figures
from tests.reliability.rawhttp import raw_request
from tests.reliability.stack import SMOKE, Stack, provision_body, served_stack, stack_settings, wait_for_status

SMOKE_TABLES = ("provision_ledger", "instances", "instance_status_history", "agent_credentials", "llm_usage_events")
SAQ_TABLES = ("saq_jobs", "saq_stats")


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.levels: dict[logging.Logger, int] = {}
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def arm(self) -> None:
        """Every logger at DEBUG (again: uvicorn configures its loggers when a server starts)."""
        for logger in [logging.getLogger(), *(logging.getLogger(n) for n in list(logging.root.manager.loggerDict))]:
            self.levels.setdefault(logger, logger.level)
            logger.setLevel(logging.DEBUG)

    def disarm(self) -> None:
        for logger, level in self.levels.items():
            logger.setLevel(level)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception as error:  # a record that cannot be formatted is still scanned
            text = f"unformattable {record.msg!r} {record.args!r}: {error!r}"
        extras = {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRIBUTES}
        self.lines.append(f"{text} {record.args!r} {extras!r} {record.stack_info or ''}")


_STANDARD_ATTRIBUTES = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


@pytest.fixture
def every_log_record(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Capture]:
    """Every record any logger handles, whatever its handlers and propagation (uvicorn's do not propagate).

    ``arm()`` puts every logger at DEBUG; call it once the servers are up (uvicorn configures its loggers when it
    starts). The levels are restored afterwards.
    """
    capture = _Capture()
    handle = logging.Logger.handle

    def capturing(self: logging.Logger, record: logging.LogRecord) -> None:
        capture.emit(record)
        handle(self, record)

    monkeypatch.setattr(logging.Logger, "handle", capturing)
    capture.arm()
    yield capture
    capture.disarm()


@pytest.fixture
async def secret_cloud() -> AsyncIterator[tuple[str, str]]:
    """A simulated cloud of its own whose Hetzner token is a distinctive secret."""
    token = f"hz-{secrets.token_hex(16)}"
    simulator = create_cloud_simulator(token=token, action_seconds=0.1, boot_seconds=0.1, token_delay_ms=5, seed=3)
    async with serve_asgi(simulator) as url:
        yield url, token


async def test_no_secret_reaches_a_log_a_job_a_row_a_response_or_the_document(
    settings: Settings,
    secret_cloud: tuple[str, str],
    clean_database: str,
    db: asyncpg.Connection,
    every_log_record: _Capture,
    row_test: str,
) -> None:
    cloud_url, hetzner_token = secret_cloud
    ops_token, agent_secret = f"ops-{secrets.token_hex(16)}", f"ats-{secrets.token_hex(16)}"
    configured = stack_settings(
        settings,
        cloud_url,
        ops_bearer_token=ops_token,
        agent_token_secret=agent_secret,
        hetzner_api_token=hetzner_token,
    )
    issuer = HmacTokenIssuer(agent_secret)
    bodies: list[bytes] = []
    async with (
        httpx.AsyncClient(base_url=cloud_url, timeout=30) as cloud,
        served_stack(configured) as stack,
    ):
        every_log_record.arm()

        async def keep(response: httpx.Response) -> httpx.Response:
            bodies.append(await response.aread())
            return response

        faults = {"hetzner": {"error_ratio": 0.3, "rate_limit_ratio": 0.2}}
        (await cloud.put("/_sim/faults", json=faults)).raise_for_status()
        first = (await keep(await stack.api.post(f"{SMOKE}/provision", json=provision_body("hygiene-1")))).json()
        instance_id = first["instance_id"]
        await wait_for_status(stack.api, [instance_id], "running", timeout=90)
        (
            await cloud.put("/_sim/faults", json={"hetzner": {"error_ratio": 0, "rate_limit_ratio": 0}})
        ).raise_for_status()
        for path in (
            "/instances/by-key/hygiene-1",
            f"/instances/{instance_id}",
            f"/instances/{instance_id}/llm-events",
        ):
            await keep(await stack.api.get(f"{SMOKE}{path}"))
        await keep(await stack.api.post(f"{SMOKE}/instances/{instance_id}/chat", json={"message": "hello there"}))
        (await cloud.put("/_sim/faults", json={"agent": {"fail_mid_stream_ratio": 1.0}})).raise_for_status()
        await keep(await stack.api.post(f"{SMOKE}/instances/{instance_id}/chat", json={"message": "a b c"}))
        (await cloud.put("/_sim/faults", json={"agent": {"fail_mid_stream_ratio": 0, "down": True}})).raise_for_status()
        await keep(await stack.api.post(f"{SMOKE}/instances/{instance_id}/chat", json={"message": "down"}))
        (await cloud.put("/_sim/faults", json={"agent": {"down": False}})).raise_for_status()
        agent_token = issuer.agent_token(uuid.UUID(instance_id)).token
        report = {"request_id": "r-1", "provider": "p", "model": "m", "input_tokens": 1, "output_tokens": 1}
        for token in (agent_token, f"{agent_token}x", ops_token, hetzner_token):
            await keep(await _usage(stack, token, report))
        host, port = stack.url.removeprefix("http://").split(":")
        for authorization in _bad_authorizations(ops_token).values():
            headers = [] if authorization is None else [(b"Authorization", authorization)]
            answer = await raw_request(host, int(port), "GET", f"{SMOKE}/instances/{instance_id}", headers)
            bodies.append(answer.body)
        await keep(await stack.api.post(f"{SMOKE}/provision", content=b"{not json"))
        await keep(await stack.api.delete(f"{SMOKE}/instances/{instance_id}"))
        await wait_for_status(stack.api, [instance_id], "deleted")
        await keep(await _usage(stack, agent_token, report | {"request_id": "r-2"}))  # revoked: 401
        await keep(await stack.api.post(f"{SMOKE}/instances/{instance_id}/chat", json={"message": "gone"}))
        second = (await keep(await stack.api.post(f"{SMOKE}/provision", json=provision_body("hygiene-2")))).json()
        await keep(await stack.api.delete(f"{SMOKE}/instances/{second['instance_id']}"))
        await wait_for_status(stack.api, [second["instance_id"]], "deleted")
        await stack.reconcile()
        document = await keep(await stack.api.get("/schema/openapi.json"))
        assert document.status_code == 200
        rows = await _every_row(db)

    needles = {
        "ops token": ops_token,
        "Hetzner token": hetzner_token,
        "agent token secret": agent_secret,
        **{
            f"agent token {n}": issuer.agent_token(uuid.UUID(r["instance_id"])).token
            for n, r in enumerate((first, second))
        },
    }
    haystacks = {
        "log records": every_log_record.lines,
        "database rows": rows,
        "response bodies": [b.decode("utf-8", "replace") for b in bodies],
    }
    found = Counter[str]()
    for where, texts in haystacks.items():
        for text in texts:
            for name, needle in needles.items():
                if needle in text:
                    found[f"{name} in {where}"] += 1
    figures.record(
        "13",
        "secrets in logs (every logger at DEBUG), saq and smoke tables, responses, OpenAPI",
        row_test,
        log_records=len(every_log_record.lines),
        database_rows=len(rows),
        responses=len(bodies),
        secrets_searched=len(needles),
        occurrences=sum(found.values()),
        where=dict(found),
    )
    assert len(every_log_record.lines) > 100  # the capture did see the scenario
    assert found == {}


async def _usage(stack: Stack, token: str, report: dict[str, Any]) -> httpx.Response:
    return await stack.api.post(
        "/internal/v1/agent/usage-events", json=report, headers={"Authorization": f"Bearer {token}"}
    )


async def _every_row(db: asyncpg.Connection) -> list[str]:
    texts = []
    for table in (*SMOKE_TABLES, *SAQ_TABLES):
        for row in await db.fetch(f"SELECT * FROM {table}"):
            texts.append(
                " ".join(v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in row.values())
            )
    return texts


def _bad_authorizations(token: str) -> dict[str, bytes | None]:
    basic = base64.b64encode(f"ops:{token}".encode()).decode()
    return {
        "missing": None,
        "empty": b"",
        "scheme only": b"Bearer",
        "scheme and space": b"Bearer ",
        "wrong token": b"Bearer wrong-token",
        "token prefix": f"Bearer {token[:-1]}".encode(),
        "token and more": f"Bearer {token}x".encode(),
        "token twice": f"Bearer {token} {token}".encode(),
        "Basic credentials": f"Basic {basic}".encode(),
        "Basic with the token": f"Basic {token}".encode(),
        "other scheme": f"Token {token}".encode(),
        "no scheme": token.encode(),
        "very long (8 KiB)": b"Bearer " + b"a" * 8192,
        "very long (60 KiB)": b"Bearer " + b"a" * 60_000,
        "non-ASCII (UTF-8)": "Bearer tökén-ключ".encode(),
        "non-ASCII (Latin-1)": b"Bearer \xe9\xff\xfe",
        "token with NUL": f"Bearer {token}\x00".encode(),
        "token and U+00A0 (UTF-8)": f"Bearer {token}\u00a0".encode(),
        "token and U+00A0 (Latin-1)": f"Bearer {token}".encode() + b"\xa0",
        "token and U+0085 (UTF-8)": f"Bearer {token}\u0085".encode(),
        "token and U+0085 (Latin-1)": f"Bearer {token}".encode() + b"\x85",
        "two spaces before the token": f"Bearer  {token}".encode(),
    }


FORBIDDEN_BY_HTTP = {"token with NUL"}
"""Header values HTTP itself forbids: uvicorn refuses the request (400) before the app sees it."""


async def test_every_bad_credential_on_every_endpoint_is_401_and_changes_nothing(
    settings: Settings, cloud_url: str, db: asyncpg.Connection, row_test: str
) -> None:
    async with served_stack(stack_settings(settings, cloud_url), worker=False) as stack:
        instance_id = (await stack.api.post(f"{SMOKE}/provision", json=provision_body("auth"))).json()["instance_id"]
        report = {"request_id": "r", "provider": "p", "model": "m", "input_tokens": 1, "output_tokens": 1}
        endpoints: list[tuple[str, str, dict[str, Any] | None]] = [
            ("POST", f"{SMOKE}/provision", provision_body("intruder")),
            ("GET", f"{SMOKE}/instances/by-key/auth", None),
            ("GET", f"{SMOKE}/instances/{instance_id}", None),
            ("DELETE", f"{SMOKE}/instances/{instance_id}", None),
            ("GET", f"{SMOKE}/instances/{instance_id}/llm-events", None),
            ("POST", f"{SMOKE}/instances/{instance_id}/chat", {"message": "hi"}),
            ("POST", "/internal/v1/agent/usage-events", report),
        ]
        outcomes: Counter[str] = Counter()
        wrong: list[str] = []
        host, port = stack.url.removeprefix("http://").split(":")
        cases = _bad_authorizations(settings.ops_bearer_token or "")
        cases["the ops token, on the agent endpoint"] = f"Bearer {settings.ops_bearer_token}".encode()
        for case, authorization in cases.items():
            for method, path, body in endpoints:
                if case.startswith("the ops token") and not path.startswith("/internal/v1/agent"):
                    continue
                headers = [] if authorization is None else [(b"Authorization", authorization)]
                content = None if body is None else json.dumps(body).encode()
                response = await raw_request(host, int(port), method, path, headers, content)
                if case in FORBIDDEN_BY_HTTP:
                    ok = response.status == 400 and response.body == b"Invalid HTTP request received."
                else:
                    ok = (
                        response.status == 401
                        and response.json() == {"detail": "Not authenticated"}
                        and response.headers.get("www-authenticate") == "Bearer"
                    )
                outcomes[f"{response.status} (expected)" if ok else str(response.status)] += 1
                if not ok:
                    wrong.append(f"{case}: {method} {path} -> {response.status} {response.body[:80]!r}")
        still = await stack.api.get(f"{SMOKE}/instances/by-key/auth")
        ledger = await db.fetchval("SELECT count(*) FROM provision_ledger")

    figures.record(
        "13",
        "bad credentials x every authenticated endpoint, real HTTP",
        row_test,
        requests=sum(outcomes.values()),
        outcomes=dict(outcomes),
        unexpected=len(wrong),
        server_errors=sum(n for s, n in outcomes.items() if s.startswith("5")),
        side_effects=ledger - 1,
    )
    assert wrong == []
    assert (still.json()["found"], ledger) == (False, 1)


OTHER = CustomerScope(uuid.UUID(int=0xAC), uuid.UUID(int=0xAE), uuid.UUID(int=0xAB))


async def test_another_customers_instance_is_invisible_on_every_endpoint_and_bodies_over_64_kib_are_413(
    settings: Settings, cloud_url: str, db: asyncpg.Connection, database_url: str, row_test: str
) -> None:
    seed_customer(database_url, OTHER)
    theirs = uuid.uuid4()
    await db.execute(
        "INSERT INTO provision_ledger (customer_id, idempotency_key, fingerprint, instance_id, task_id, manifest_id, "
        "region_id, tier_id) VALUES ($1, 'theirs', 'f', $2, 't', 'agent-default', 'fsn1', 'small')",
        OTHER.customer_id,
        theirs,
    )
    await db.execute(
        "INSERT INTO instances (id, customer_id, tenant_id, subscription_id, hostname, status, manifest_id, region_id, "
        "tier_id, provider_server_id, ipv4, created_at) VALUES ($1, $2, $3, $4, 'theirs', 'running', 'agent-default', "
        "'fsn1', 'small', 1, '127.0.0.1', now())",
        theirs,
        OTHER.customer_id,
        OTHER.tenant_id,
        OTHER.subscription_id,
    )
    calls = [
        ("GET", "", None),
        ("DELETE", "", None),
        ("GET", "/llm-events", None),
        ("GET", "/llm-events?window_seconds=86400", None),
        ("POST", "/chat", {"message": "hi"}),
    ]
    diffs, not_404 = [], 0
    async with served_stack(stack_settings(settings, cloud_url), worker=False) as stack:
        for method, suffix, body in calls:
            foreign = await stack.api.request(method, f"{SMOKE}/instances/{theirs}{suffix}", json=body)
            unknown = await stack.api.request(method, f"{SMOKE}/instances/{uuid.uuid4()}{suffix}", json=body)
            not_404 += foreign.status_code != 404
            if (foreign.status_code, foreign.content, foreign.headers.get("content-type")) != (
                unknown.status_code,
                unknown.content,
                unknown.headers.get("content-type"),
            ):
                diffs.append(f"{method} {suffix}")
        poll = await stack.api.get(f"{SMOKE}/instances/by-key/theirs")
        big = b'{"message": "' + b"x" * (64 * 1024) + b'"}'
        oversized = [
            (await stack.api.post(path, content=big, headers={"Content-Type": "application/json"})).status_code
            for path in (f"{SMOKE}/provision", f"{SMOKE}/instances/{theirs}/chat")
        ]
        chunked = await stack.api.post(f"{SMOKE}/provision", content=_chunks(big))
        untouched = await db.fetchrow("SELECT status, deleted_at FROM instances WHERE id = $1", theirs)

    figures.record(
        "14",
        "another customer's instance on every instance endpoint; bodies over 64 KiB",
        row_test,
        cross_customer_requests=len(calls),
        non_404=not_404,
        body_diffs_vs_unknown_id=len(diffs),
        poll_of_their_key_found=poll.json()["found"],
        oversized_statuses=[*oversized, chunked.status_code],
    )
    assert (not_404, diffs) == (0, [])
    assert poll.json() == {"found": False, "instance_id": None, "status": None}
    assert untouched is not None
    assert (untouched["status"], untouched["deleted_at"]) == ("running", None)
    assert [*oversized, chunked.status_code] == [413, 413, 413]


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for offset in range(0, len(data), 4096):
        yield data[offset : offset + 4096]
        await asyncio.sleep(0)
