"""The Litestar application, built around a dishka container made by ``smoke.bootstrap.make_container``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

import msgspec
from dishka import AsyncContainer
from litestar import Litestar
from litestar.openapi.spec import OpenAPI, Schema
from litestar.types import ASGIApp

from smoke.api import schemas
from smoke.api.bodies import JsonRequest
from smoke.api.controllers.agent import AgentController
from smoke.api.controllers.health import healthz, metrics, readyz
from smoke.api.controllers.smoke import BODY_LIMIT, SmokeController
from smoke.api.di import use_container
from smoke.api.docs import openapi_config
from smoke.api.errors import exception_handlers
from smoke.api.options import EveryMethodAllowed
from smoke.api.ui import dashboard_routes, template_config
from smoke.domain.catalog import CatalogSpec
from smoke.observability import RequestContextMiddleware
from smoke.settings import Settings

__all__ = ("create_app",)


def _catalog_enums(document: OpenAPI, catalog: CatalogSpec) -> None:
    """The ids a provision may name, as ``enum``s of ``ProvisionCreate``: a request valid for the document is accepted.

    Any other id is still answered with the documented 422 ``unknown_catalog_id`` (e.g. an entry retired since).
    """
    component = (document.components.schemas or {}).get("ProvisionCreate") if document.components else None
    assert isinstance(component, Schema)
    assert component.properties is not None
    for name, ids in (("manifest_id", catalog.manifests), ("region_id", catalog.regions), ("tier_id", catalog.tiers)):
        field = component.properties[name]
        assert isinstance(field, Schema)
        field.enum = sorted(ids)


def _correct_the_document(schema: OpenAPI) -> None:
    """Say what the API does where Litestar's generated document does not.

    Litestar documents a 400 for every handler with parameters (validation errors are 422 here), and it does not
    carry msgspec's ``forbid_unknown_fields`` into the schemas (unknown body fields are refused here).
    """
    strict = {
        name
        for name, struct in vars(schemas).items()
        if isinstance(struct, type)
        and issubclass(struct, msgspec.Struct)
        and struct.__struct_config__.forbid_unknown_fields
    }
    for name, component in ((schema.components.schemas or {}) if schema.components else {}).items():
        if name in strict and isinstance(component, Schema):
            component.additional_properties = False
    for path_item in (schema.paths or {}).values():
        for method in ("get", "post", "put", "patch", "delete"):
            operation = getattr(path_item, method)
            if operation is not None and operation.responses:
                operation.responses.pop("400", None)


def create_app(container: AsyncContainer) -> Litestar:
    """The API app. The container must provide ``Settings`` (with ``OPS_BEARER_TOKEN``) and the services.

    The app closes the container when it shuts down.
    """

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        settings = await container.get(Settings)
        app.state.ops_token = settings.required("OPS_BEARER_TOKEN").encode()
        _correct_the_document(app.openapi_schema)
        _catalog_enums(app.openapi_schema, await container.get(CatalogSpec))
        try:
            yield
        finally:
            await container.close()

    app = Litestar(
        route_handlers=[SmokeController, AgentController, healthz, readyz, metrics, *dashboard_routes()],
        lifespan=[lifespan],
        exception_handlers=exception_handlers,
        request_class=JsonRequest,
        request_max_body_size=BODY_LIMIT,
        openapi_config=openapi_config(),
        template_config=template_config(),
        logging_config=None,  # the entry point configures logging; unexpected errors are logged by their handler
    )
    use_container(app, container)  # APP scope only: no request opens a dishka scope (smoke.api.di)
    app.asgi_handler = cast("ASGIApp", EveryMethodAllowed(app.asgi_handler, app))
    # Outermost, so unmatched routes are counted and every log line of a request carries its id.
    app.asgi_handler = cast("ASGIApp", RequestContextMiddleware(app.asgi_handler))
    return app
