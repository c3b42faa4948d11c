"""The OpenAPI document and Swagger UI at /schema, every asset served by smoke (tests/browser renders it offline)."""

from __future__ import annotations

import re

import httpx
import pytest
import yaml


@pytest.mark.parametrize("path", ["/schema", "/schema/swagger"])
async def test_swagger_ui_loads_every_asset_from_smoke_itself(client: httpx.AsyncClient, path: str) -> None:
    page = await client.get(path)

    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    assert page.status_code == 200
    assert len(urls) == 4
    for url in urls:
        assert url.startswith("/schema/swagger-ui/")
        assert (await client.get(url)).status_code == 200


async def test_the_assets_have_their_media_types_and_may_be_cached(client: httpx.AsyncClient) -> None:
    script = await client.get("/schema/swagger-ui/swagger-ui-bundle.js")
    style = await client.get("/schema/swagger-ui/swagger-ui.css")

    assert script.headers["content-type"].startswith("text/javascript")
    assert style.headers["content-type"].startswith("text/css")
    assert "max-age" in script.headers["cache-control"]


@pytest.mark.parametrize("name", ["index.html", "swagger-initializer.js", "swagger-ui.js.map", "..%2F__init__.py"])
async def test_nothing_else_of_the_bundle_is_served(client: httpx.AsyncClient, name: str) -> None:
    assert (await client.get(f"/schema/swagger-ui/{name}")).status_code == 404


@pytest.mark.parametrize("path", ["/schema/redoc", "/schema/elements", "/schema/rapidoc"])
async def test_no_ui_that_would_need_the_internet_is_offered(client: httpx.AsyncClient, path: str) -> None:
    assert (await client.get(path)).status_code == 404


async def test_the_yaml_document_is_the_json_document(client: httpx.AsyncClient) -> None:
    as_yaml = await client.get("/schema/openapi.yaml")
    as_json = await client.get("/schema/openapi.json")

    assert as_yaml.headers["content-type"].startswith("application/vnd.oai.openapi")
    assert yaml.safe_load(as_yaml.text) == as_json.json()


async def test_every_operation_has_a_description_besides_its_summary(client: httpx.AsyncClient) -> None:
    document = (await client.get("/schema/openapi.json")).json()

    operations = [op for path in document["paths"].values() for op in path.values()]
    assert operations
    assert [op["summary"] for op in operations if len(op.get("description", "")) < 20] == []
