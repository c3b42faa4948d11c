"""``/ui``: the dashboard for the people who run the platform, server-rendered, behind the ops token asked once.

``GET /ui`` shows the dashboard to a valid session cookie and the sign-in form to anyone else; ``POST /ui/login``
checks the token and sets the cookie; ``GET /ui/overview`` is the part of the page that ``dashboard.js`` re-fetches
every few seconds. Nothing secret is ever rendered: not the ops token, not an agent token.
"""

from __future__ import annotations

import hmac
import time
from typing import Annotated, Any, Final

import msgspec
from litestar import Controller, Request, get, post
from litestar.datastructures import ResponseHeader
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Redirect, Response, Template
from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler

from smoke.api.di import FromDishka, inject
from smoke.api.ui.chart import region_charts
from smoke.api.ui.rendering import STATIC
from smoke.api.ui.session import COOKIE_NAME, is_valid, session_cookie, signed_out_cookie
from smoke.domain.services import Dashboard, Overview

__all__ = ("DashboardController", "dashboard_routes")

_REFUSAL: Final = "That is not the ops token of this smoke."
_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


class LoginForm(msgspec.Struct):
    token: str = ""


class DashboardController(Controller):
    path = "/ui"
    include_in_schema = False
    response_headers = [
        ResponseHeader(name="Content-Security-Policy", value=_POLICY),
        ResponseHeader(name="Cache-Control", value="no-store"),
        ResponseHeader(name="Referrer-Policy", value="no-referrer"),
        ResponseHeader(name="X-Content-Type-Options", value="nosniff"),
    ]

    @get("/")
    @inject
    async def page(self, request: Request[Any, Any, Any], dashboard: FromDishka[Dashboard]) -> Template:
        if not _signed_in(request):
            return Template("login.html", context={"message": None})
        return Template("dashboard.html", context=_context(await dashboard.overview()))

    @get("/overview")
    @inject
    async def overview(
        self, request: Request[Any, Any, Any], dashboard: FromDishka[Dashboard]
    ) -> Template | Response[str]:
        """The live part of the page; 401 once the session is gone, so that the script shows the form again."""
        if not _signed_in(request):
            return Response("", status_code=401)
        return Template("overview.html", context=_context(await dashboard.overview()))

    @post("/login")
    async def login(
        self,
        request: Request[Any, Any, Any],
        data: Annotated[LoginForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
    ) -> Redirect | Template:
        """Constant-time check of the token; the cookie proves it was typed, a wrong one gets the form and 401.

        Surrounding ASCII spaces, tabs and line breaks are dropped (an ops token has none, and a pasted one often
        does); nothing else is, so a token with a trailing U+00A0 or U+0085 is as wrong here as in a header.
        """
        presented = data.token.strip(" \t\r\n").encode("utf-8", "surrogateescape")
        ops_token: bytes = request.app.state.ops_token
        if not hmac.compare_digest(presented, ops_token):
            return Template("login.html", context={"message": _REFUSAL}, status_code=401)
        cookie = session_cookie(ops_token, time.time(), secure=_over_https(request))
        return Redirect("/ui", status_code=303, cookies=[cookie])

    @post("/logout")
    async def logout(self, request: Request[Any, Any, Any]) -> Redirect:
        return Redirect("/ui", status_code=303, cookies=[signed_out_cookie(secure=_over_https(request))])


def dashboard_routes() -> list[ControllerRouterHandler]:
    """The dashboard, and its stylesheet and script under ``/ui/static`` (smoke serves every asset of the page)."""
    static = create_static_files_router(path="/ui/static", directories=[STATIC], include_in_schema=False)
    return [DashboardController, static]


def _signed_in(request: Request[Any, Any, Any]) -> bool:
    return is_valid(request.cookies.get(COOKIE_NAME), request.app.state.ops_token, time.time())


def _over_https(request: Request[Any, Any, Any]) -> bool:
    return request.url.scheme == "https"


def _context(overview: Overview) -> dict[str, Any]:
    return {
        "overview": overview,
        "charts": region_charts(overview),
        "days": Dashboard.DAYS,
        "failed": sum(failure.count for failure in overview.failures),
    }
