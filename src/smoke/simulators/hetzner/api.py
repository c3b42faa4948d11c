"""The ``/v1`` HTTP surface: routes, authentication, rate limit and the injected Hetzner faults.

Every request, in this order: counted under its route template; delayed by ``latency_ms``; charged to the
project's token bucket (empty: 429 ``rate_limit_exceeded``); answered 429 by ``rate_limit_ratio`` (with
``RateLimit-Reset`` one second ahead); authenticated (401 ``unauthorized``); answered 409 ``conflict``,
502 ``bad_gateway`` or 504 ``timeout`` by ``error_ratio``; routed (404 ``not_found``, 405
``method_not_allowed``) and handled. A ``POST /v1/servers`` that created a server is then dropped by
``drop_create_response_ratio``: the connection closes without a status line. Every answer carries
``Content-Type: application/json``, ``RateLimit-Limit``, ``RateLimit-Remaining``, ``RateLimit-Reset`` and
``X-Correlation-Id``.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Callable, Iterable
from dataclasses import replace

from smoke.simulators.asgi import Abort, HttpError, JsonResponse, NoRoute, Request, Response, Route, Router
from smoke.simulators.hetzner.catalog import CATALOG
from smoke.simulators.hetzner.cloud import HetznerCloud
from smoke.simulators.hetzner.errors import api_error
from smoke.simulators.hetzner.listing import paginate
from smoke.simulators.world import World

__all__ = ("handle_hetzner",)

Handler = Callable[[HetznerCloud, Request], JsonResponse]

_RATE_LIMIT_MESSAGE = "limit of 3600 requests per hour reached"
_RETRYABLE_ERRORS = (
    (409, "conflict", "the resource changed during the request, please retry"),
    (502, "bad_gateway", "bad gateway"),
    (504, "timeout", "the request timed out, please retry"),
)


def _create_server(cloud: HetznerCloud, request: Request) -> JsonResponse:
    return JsonResponse(201, cloud.create_server(request.body))


def _list_servers(cloud: HetznerCloud, request: Request) -> JsonResponse:
    return JsonResponse(200, cloud.list_servers(request.query))


def _get_server(cloud: HetznerCloud, request: Request) -> JsonResponse:
    return JsonResponse(200, cloud.get_server(request.params["id"]))


def _delete_server(cloud: HetznerCloud, request: Request) -> JsonResponse:
    return JsonResponse(200, cloud.delete_server(request.params["id"]))


def _get_action(cloud: HetznerCloud, request: Request) -> JsonResponse:
    return JsonResponse(200, cloud.get_action(request.params["id"]))


def _list_actions(cloud: HetznerCloud, request: Request) -> JsonResponse:
    return JsonResponse(200, cloud.list_actions(request.query))


def _get_server_action(cloud: HetznerCloud, request: Request) -> JsonResponse:
    return JsonResponse(200, cloud.get_action(request.params["action_id"], server_id=request.params["id"]))


def _list_server_actions(cloud: HetznerCloud, request: Request) -> JsonResponse:
    return JsonResponse(200, cloud.list_server_actions(request.params["id"], request.query))


def _catalogue_list(key: str, entries: Iterable[dict[str, object]], filters: tuple[str, ...]) -> Handler:
    """A read-only list of catalogue entries, filterable by exact values of ``filters``."""

    def handler(_cloud: HetznerCloud, request: Request) -> JsonResponse:
        selected = [
            entry
            for entry in entries
            if all(entry[name] == request.query_value(name) for name in filters if name in request.query)
        ]
        page, meta = paginate(selected, request.query)
        return JsonResponse(200, {key: list(page), "meta": {"pagination": meta}})

    return handler


_LOCATIONS = [location.to_json() for location in CATALOG.locations]
_SERVER_TYPES = [server_type.to_json() for server_type in CATALOG.server_types]
_IMAGES = [image.to_json() for image in CATALOG.images]

_ROUTER = Router[Handler](
    [
        Route("POST", "/v1/servers", _create_server),
        Route("GET", "/v1/servers", _list_servers),
        Route("GET", "/v1/servers/{id}", _get_server),
        Route("DELETE", "/v1/servers/{id}", _delete_server),
        Route("GET", "/v1/servers/actions/{id}", _get_action),
        Route("GET", "/v1/servers/{id}/actions", _list_server_actions),
        Route("GET", "/v1/servers/{id}/actions/{action_id}", _get_server_action),
        Route("GET", "/v1/actions", _list_actions),
        Route("GET", "/v1/actions/{id}", _get_action),
        Route("GET", "/v1/locations", _catalogue_list("locations", _LOCATIONS, ("name",))),
        Route("GET", "/v1/server_types", _catalogue_list("server_types", _SERVER_TYPES, ("name",))),
        Route("GET", "/v1/images", _catalogue_list("images", _IMAGES, ("name", "architecture", "type"))),
    ]
)


async def handle_hetzner(world: World, request: Request) -> Response:
    """Answer one ``/v1`` request (see the module docstring for the order of things)."""
    route_name, handler, request = _route(request)
    if route_name is not None:
        world.request_counts[route_name] += 1
    faults = world.faults.hetzner
    if faults.latency_ms:
        await asyncio.sleep(faults.latency_ms / 1000)
    now = world.settings.clock()
    try:
        _admit(world, request, now)
        response = handler(world.cloud, request)
    except HttpError as exc:
        response = exc.response
    if handler is _create_server and response.status == 201 and world.chance(faults.drop_create_response_ratio):
        return Abort()
    return response.with_default_headers(
        {**world.rate_limit.headers(now), "X-Correlation-Id": f"{world.rng.getrandbits(64):016x}"}
    )


def _route(request: Request) -> tuple[str | None, Handler, Request]:
    """The route's name (None if there is none), its handler and the request with its path parameters."""
    try:
        route, params = _ROUTER.match(request.method, request.path)
    except NoRoute as exc:
        error = _no_route_error(exc)

        def no_route(_cloud: HetznerCloud, _request: Request) -> JsonResponse:
            raise error

        return None, no_route, request
    return route.name, route.handler, replace(request, params=params)


def _admit(world: World, request: Request, now: float) -> None:
    """Raise the error the request meets before it is processed: rate limit, authentication, injected error."""
    if not world.rate_limit.take(now):
        raise api_error(429, "rate_limit_exceeded", _RATE_LIMIT_MESSAGE)
    if world.chance(world.faults.hetzner.rate_limit_ratio):
        headers = {"RateLimit-Remaining": "0", "RateLimit-Reset": str(int(now) + 1)}
        raise api_error(429, "rate_limit_exceeded", _RATE_LIMIT_MESSAGE, headers=headers)
    if not hmac.compare_digest((request.bearer_token() or "").encode(), world.settings.token.encode()):
        raise api_error(401, "unauthorized", "unable to authenticate")
    if world.chance(world.faults.hetzner.error_ratio):
        raise api_error(*world.rng.choice(_RETRYABLE_ERRORS))


def _no_route_error(no_route: NoRoute) -> HttpError:
    if not no_route.allowed:
        return api_error(404, "not_found", "not found")
    return api_error(
        405, "method_not_allowed", "method not allowed", headers={"Allow": ", ".join(sorted(no_route.allowed))}
    )
