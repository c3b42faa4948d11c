"""Schemathesis (every check, positive and negative data) against the OpenAPI document the API serves.

The API runs under uvicorn on a real loopback port, on the public fakes (``FakeAdaptersProvider``) so hundreds of
cases take seconds; two instances are provisioned and running beforehand, so the success paths of Smoke Status,
Smoke Chat, Smoke Llm Events, Smoke Delete and the agent's usage report are reached, not only their 404s.

What the test tells schemathesis that the document cannot: the instances that exist, the agent token the usage
endpoint takes, and that a CI client never sends one idempotency key with two bodies (a documented 422 as well, but
not one a schema-valid request can avoid): the catalog ids, ``enum``s of the document, are derived from the key.
"""

from __future__ import annotations

import uuid
import zlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

import hypothesis
import msgspec
import pytest
import requests
import schemathesis
from litestar import Litestar
from litestar.testing import TestClient
from requests.structures import CaseInsensitiveDict
from schemathesis.core.failures import FailureGroup

from smoke.api import create_app
from smoke.api import schemas as api_schemas
from smoke.bootstrap import make_container
from smoke.domain.models import ChatEvent
from smoke.domain.services import Provisioner
from smoke.settings import Settings
from smoke.testing.providers import FakeAdaptersProvider
from tests.reliability import figures
from tests.reliability.servers import ThreadedServer, serve_in_thread

TOKEN = "schemathesis-ops-token"
MAX_EXAMPLES = 40
USAGE_PATH = "/internal/v1/agent/usage-events"
REPLY = [
    ChatEvent("delta", '{"text": "hello"}', "1"),
    ChatEvent("done", '{"usage": {"provider": "p", "model": "m", "input_tokens": 1, "output_tokens": 1}}', "2"),
]


def make_app(fakes: FakeAdaptersProvider) -> Litestar:
    app: Litestar = create_app(make_container(Settings(ops_bearer_token=TOKEN, max_live_instances=10_000), fakes))
    return app


def served_document() -> dict[str, Any]:
    """``/schema/openapi.json`` as the app serves it once started (its lifespan may adjust the document)."""
    with TestClient(make_app(FakeAdaptersProvider())) as client:
        response = client.get("/schema/openapi.json")
        response.raise_for_status()
        document: dict[str, Any] = response.json()
        return document


DOCUMENT = served_document()
PROVISION = DOCUMENT["components"]["schemas"]["ProvisionCreate"]["properties"]
CATALOG: dict[str, list[str]] = {name: PROVISION[name]["enum"] for name in ("manifest_id", "region_id", "tier_id")}
schema = schemathesis.openapi.from_dict(DOCUMENT)
schema.config.generation.update(max_examples=MAX_EXAMPLES, deterministic=True)

KNOWN: dict[str, str] = {}
"""The ids and the agent token of the instances provisioned before the run (``keeper`` and ``victim``)."""
STATUSES: Counter[tuple[str, int]] = Counter()
FAILURES: Counter[tuple[str, str]] = Counter()


@schema.auth(refresh_interval=None)
class Bearer:
    """The ops token everywhere, the running instance's agent token on the agent's usage endpoint."""

    def get(self, case: schemathesis.Case[Any], context: schemathesis.AuthContext) -> str:
        return KNOWN.get("agent_token", "none") if context.operation.path == USAGE_PATH else TOKEN

    def set(self, case: schemathesis.Case[Any], data: str, context: schemathesis.AuthContext) -> None:
        headers = case.headers or CaseInsensitiveDict()
        headers["Authorization"] = f"Bearer {data}"
        case.headers = headers


@schema.hook
def map_case(context: schemathesis.HookContext, case: schemathesis.Case[Any]) -> schemathesis.Case[Any]:
    """Catalog ids derived from the idempotency key; half the valid instance ids are the running instances'.

    Only values that are already valid for the document are replaced, by other valid ones, so a negative case stays
    negative and a positive one positive.
    """
    if isinstance(case.body, dict):
        seed = zlib.crc32(str(case.body.get("idempotency_key")).encode())
        for name, ids in CATALOG.items():
            if case.body.get(name) in ids:
                case.body[name] = ids[seed % len(ids)]
    value = (case.path_parameters or {}).get("instance_id")
    if isinstance(value, str) and KNOWN:
        try:
            parsed = uuid.UUID(value)
        except ValueError:
            return case
        if parsed.int % 2 == 0:
            assert case.path_parameters is not None
            case.path_parameters["instance_id"] = KNOWN["victim" if case.method.upper() == "DELETE" else "keeper"]
    return case


@pytest.fixture(scope="module")
def served() -> Iterator[ThreadedServer]:
    """The API on fakes on a loopback port, with two running instances; records the figures when done."""
    fakes = FakeAdaptersProvider()
    fakes.agents.reply = list(REPLY)
    app = make_app(fakes)
    with serve_in_thread(app) as server:
        for name in ("keeper", "victim"):
            body = {"idempotency_key": f"schemathesis-{name}", "manifest_id": "agent-default"}
            body |= {"region_id": "fsn1", "tier_id": "small"}
            receipt = requests.post(
                f"{server.url}/internal/v1/smoke/provision",
                json=body,
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=10,
            )
            receipt.raise_for_status()
            KNOWN[name] = receipt.json()["instance_id"]
            server.run(_build(app, uuid.UUID(KNOWN[name])))
        KNOWN["agent_token"] = fakes.tokens.agent_token(uuid.UUID(KNOWN["keeper"])).token
        yield server
    _record()


async def _build(app: Litestar, instance_id: uuid.UUID) -> None:
    provisioner = await app.state.dishka_container.get(Provisioner)
    status = await provisioner.provision(instance_id)
    assert status is not None
    assert status.value == "running"


def test_the_document_under_test_is_the_one_served(served: ThreadedServer) -> None:
    assert requests.get(f"{served.url}/schema/openapi.json", timeout=10).json() == DOCUMENT


@schema.parametrize()
@hypothesis.settings(deadline=None, suppress_health_check=list(hypothesis.HealthCheck))
def test_every_operation_conforms_to_the_document(case: schemathesis.Case[Any], served: ThreadedServer) -> None:
    response = case.call(base_url=served.url, timeout=10)
    STATUSES[(case.operation.label, response.status_code)] += 1
    try:
        case.validate_response(response)
    except FailureGroup as group:
        for failure in group.exceptions:
            FAILURES[(case.operation.label, f"{failure.code} {failure.title}")] += 1
        raise


def test_bodies_that_refuse_unknown_fields_say_so_in_the_document() -> None:
    strict = {
        name
        for name, struct in vars(api_schemas).items()
        if isinstance(struct, type)
        and issubclass(struct, msgspec.Struct)
        and struct.__struct_config__.forbid_unknown_fields
        and name in DOCUMENT["components"]["schemas"]
    }

    assert strict >= {"ProvisionCreate", "ChatCreate", "UsageEventCreate"}
    lax = {name for name in strict if DOCUMENT["components"]["schemas"][name].get("additionalProperties") is not False}
    assert lax == set()


def test_options_allows_every_documented_method_of_the_path(served: ThreadedServer) -> None:
    """With the path's own credentials, as every other method of it (the agent's endpoint takes an agent token)."""
    wrong = {}
    for path, item in DOCUMENT["paths"].items():
        documented = {method.upper() for method in item if method in ("get", "post", "put", "patch", "delete")}
        url = served.url + path.replace("{instance_id}", KNOWN["keeper"]).replace("{idempotency_key}", "k")
        token = KNOWN["agent_token"] if path == USAGE_PATH else TOKEN
        answer = requests.options(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        allowed = {method.strip() for method in answer.headers.get("allow", "").split(",")}
        if allowed != documented | {"OPTIONS"}:
            wrong[path] = sorted(allowed)

    assert wrong == {}


def _record() -> None:
    cases = sum(STATUSES.values())
    if not cases:
        return
    server_errors = sum(n for (_, status), n in STATUSES.items() if status >= 500)
    histogram = Counter[int]()
    for (_, status), n in STATUSES.items():
        histogram[status] += n
    figures.record(
        "14",
        "schemathesis, all checks, on the served document",
        operations=len({label for label, _ in STATUSES}),
        test_cases=cases,
        statuses=dict(sorted(histogram.items())),
        server_errors=server_errors,
        failures=sum(FAILURES.values()),
        unique_failures=len(FAILURES),
        by_check={f"{label} {check}": n for (label, check), n in sorted(FAILURES.items())},
    )
