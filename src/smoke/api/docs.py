"""The OpenAPI document and its browsable UI, Swagger UI, served by smoke itself so that ``/schema`` works offline.

Litestar's render plugins load their JavaScript, CSS and favicon from CDNs: without internet ``/schema`` was a blank
page. Swagger UI's files come from the ``swagger-ui-bundle-v2`` wheel (the maintained fork, by Connexion's
maintainer, of the ``swagger-ui-bundle`` wheel, which stopped at Swagger UI 4 and cannot render OpenAPI 3.1) and are
served under ``/schema/swagger-ui/``. No other UI is configured: ``/schema/redoc`` and ``/schema/elements`` answer
404 instead of a page that would need the internet.
"""

from __future__ import annotations

from typing import Final

from litestar import Router, get
from litestar.exceptions import NotFoundException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin, YamlRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.params import FromPath
from litestar.response import File
from swagger_ui_bundle import swagger_ui_path

__all__ = ("SCHEMA_PATH", "openapi_config")

SCHEMA_PATH: Final = "/schema"
_ASSETS_PATH: Final = "/swagger-ui"
_ASSETS: Final = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui-standalone-preset.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}


def openapi_config() -> OpenAPIConfig:
    """The document at ``/schema/openapi.json`` and ``.yaml``, Swagger UI at ``/schema`` and ``/schema/swagger``.

    Each operation's description is its handler's docstring.
    """
    return OpenAPIConfig(
        title="smoke",
        version="0.1.0",
        description="Provision an agent VPS on Hetzner Cloud, chat with it, meter it and clean it up, for CI.",
        path=SCHEMA_PATH,
        render_plugins=[OfflineSwaggerRenderPlugin(), YamlRenderPlugin()],
        use_handler_docstrings=True,
        components=Components(
            security_schemes={
                "BearerAuth": SecurityScheme(type="http", scheme="bearer", description="OPS_BEARER_TOKEN"),
                "AgentToken": SecurityScheme(type="http", scheme="bearer", description="An instance's agent token"),
            }
        ),
    )


class OfflineSwaggerRenderPlugin(SwaggerRenderPlugin):
    """Litestar's Swagger UI page, pointing at the copy of Swagger UI that smoke serves."""

    def __init__(self) -> None:
        assets = f"{SCHEMA_PATH}{_ASSETS_PATH}"
        super().__init__(
            js_url=f"{assets}/swagger-ui-bundle.js",
            css_url=f"{assets}/swagger-ui.css",
            standalone_preset_js_url=f"{assets}/swagger-ui-standalone-preset.js",
            favicon=f"<link rel='icon' type='image/png' href='{assets}/favicon-32x32.png'>",
        )

    def receive_router(self, router: Router) -> None:
        super().receive_router(router)
        router.register(get(f"{_ASSETS_PATH}/{{name:str}}", sync_to_thread=False)(_swagger_ui_asset))


def _swagger_ui_asset(name: FromPath[str]) -> File:
    """One of the few files of the bundle the page loads; nothing else of the wheel's folder is served."""
    if name not in _ASSETS:
        raise NotFoundException
    return File(
        swagger_ui_path / name,
        media_type=_ASSETS[name],
        content_disposition_type="inline",
        headers={"Cache-Control": "public, max-age=86400"},
    )
