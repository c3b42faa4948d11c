"""The OpenAPI document says what the API accepts: the catalog ids a provision may name are its ``enum``s."""

from __future__ import annotations

from typing import Any

import httpx

from smoke.api import create_app
from smoke.bootstrap import make_container
from smoke.domain.catalog import CatalogSpec
from smoke.domain.models import Manifest
from smoke.settings import Settings
from smoke.testing.providers import FakeAdaptersProvider
from tests.lifespan import running
from tests.typed import asgi_transport
from tests.unit.api.conftest import TOKEN


def catalog_enums(document: dict[str, Any]) -> dict[str, list[str]]:
    properties = document["components"]["schemas"]["ProvisionCreate"]["properties"]
    return {name: properties[name].get("enum") for name in ("manifest_id", "region_id", "tier_id")}


async def test_the_document_lists_the_seeded_catalog_ids_as_enums(client: httpx.AsyncClient) -> None:
    document = (await client.get("/schema/openapi.json")).json()

    assert catalog_enums(document) == {
        "manifest_id": ["agent-default"],
        "region_id": ["ash", "fsn1", "hel1", "hil", "nbg1", "sin"],
        "tier_id": ["large", "medium", "small"],
    }


async def test_the_document_lists_the_configured_catalog(fakes: FakeAdaptersProvider) -> None:
    catalog = CatalogSpec({"gpu-agent": Manifest("gpu-agent", "snapshot-1")}, {"eu": "fsn1"}, {"xl": "cpx52"})
    app = create_app(make_container(Settings(ops_bearer_token=TOKEN, catalog=catalog), fakes))
    async with running(app), httpx.AsyncClient(transport=asgi_transport(app), base_url="http://api") as c:
        document = (await c.get("/schema/openapi.json")).json()

    assert catalog_enums(document) == {"manifest_id": ["gpu-agent"], "region_id": ["eu"], "tier_id": ["xl"]}
