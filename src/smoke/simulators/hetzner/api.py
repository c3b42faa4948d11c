"""The ``/v1`` HTTP surface: routes, authentication, rate limit and the injected Hetzner faults.

Every request, in this order: counted under its route template; delayed by ``latency_ms``; answered by a load
balancer's HTML 502 or 504 page by ``gateway_error_ratio`` (the request never reaches the API: nothing is charged
or changed, and the page carries no API header); charged to the project's token bucket (empty: 429
``rate_limit_exceeded``); answered 429 by ``rate_limit_ratio``, with the headers an empty bucket sends
(``RateLimit-Remaining: 0``, ``RateLimit-Reset`` when an empty bucket is full again); authenticated (401
``unauthorized``); answered 409 ``conflict``, 502 ``bad_gateway`` or 504 ``timeout`` by ``error_ratio``; answered
503 ``unavailable`` by ``unavailable_ratio``; routed (404 ``not_found``, 405 ``method_not_allowed``) and handled.
A ``POST /v1/servers`` that created a server is then dropped by ``drop_create_response_ratio``: the connection
closes without a status line. Every API answer carries ``Content-Type: application/json`` (but a 204),
``RateLimit-Limit``, ``RateLimit-Remaining``, ``RateLimit-Reset`` and ``X-Correlation-Id``.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Callable
from dataclasses import replace

from smoke.simulators.asgi import (
    Abort,
    HttpError,
    JsonResponse,
    NoRoute,
    PageResponse,
    Request,
    Response,
    Route,
    Router,
)
from smoke.simulators.hetzner.cloud import HetznerCloud
from smoke.simulators.hetzner.errors import api_error
from smoke.simulators.hetzner.servers import POWER_COMMANDS
from smoke.simulators.world import World

__all__ = ("handle_hetzner",)

Handler = Callable[[HetznerCloud, Request, float], JsonResponse]
Call = Callable[[HetznerCloud, Request, float], object]

CREATE_SERVER = "POST /v1/servers"
_RETRYABLE_ERRORS = (
    (409, "conflict", "the resource changed during the request, please retry"),
    (502, "bad_gateway", "bad gateway"),
    (504, "timeout", "the request timed out, please retry"),
)
_GATEWAY_PAGES = (
    (502, "Bad Gateway"),
    (504, "Gateway Time-out"),
)


def _answer(status: int, call: Call) -> Handler:
    """A handler answering ``status`` with the body ``call`` returns."""
    return lambda cloud, request, now: JsonResponse(status, call(cloud, request, now))


def _power_route(path: str) -> Route[Handler]:
    return Route(
        "POST",
        f"/v1/servers/{{id}}/actions/{path}",
        _answer(201, lambda c, r, now: c.power(r.params["id"], path, now)),
    )


_ROUTER = Router[Handler](
    [
        Route("POST", "/v1/servers", _answer(201, lambda c, r, now: c.create_server(r.body, now))),
        Route("GET", "/v1/servers", _answer(200, lambda c, r, _: c.list_servers(r.query))),
        Route("GET", "/v1/servers/{id}", _answer(200, lambda c, r, _: c.get_server(r.params["id"]))),
        Route("PUT", "/v1/servers/{id}", _answer(200, lambda c, r, _: c.update_server(r.params["id"], r.body))),
        Route("DELETE", "/v1/servers/{id}", _answer(200, lambda c, r, now: c.delete_server(r.params["id"], now))),
        *(_power_route(path) for path in POWER_COMMANDS),
        Route("GET", "/v1/servers/actions/{id}", _answer(200, lambda c, r, now: c.get_action(r.params["id"], now))),
        Route(
            "GET",
            "/v1/servers/{id}/actions",
            _answer(200, lambda c, r, now: c.list_server_actions(r.params["id"], r.query, now)),
        ),
        Route(
            "GET",
            "/v1/servers/{id}/actions/{action_id}",
            _answer(200, lambda c, r, now: c.get_action(r.params["action_id"], now, server_id=r.params["id"])),
        ),
        Route("GET", "/v1/actions", _answer(200, lambda c, r, now: c.list_actions(r.query, now))),
        Route("GET", "/v1/actions/{id}", _answer(200, lambda c, r, now: c.get_action(r.params["id"], now))),
        Route("POST", "/v1/ssh_keys", _answer(201, lambda c, r, now: c.ssh_keys.create(r.body, now))),
        Route("GET", "/v1/ssh_keys", _answer(200, lambda c, r, _: c.ssh_keys.listing(r.query))),
        Route("GET", "/v1/ssh_keys/{id}", _answer(200, lambda c, r, _: c.ssh_keys.get(r.params["id"]))),
        Route("PUT", "/v1/ssh_keys/{id}", _answer(200, lambda c, r, _: c.ssh_keys.update(r.params["id"], r.body))),
        Route("DELETE", "/v1/ssh_keys/{id}", _answer(204, lambda c, r, _: c.ssh_keys.delete(r.params["id"]))),
        Route("POST", "/v1/firewalls", _answer(201, lambda c, r, now: c.firewalls.create(r.body, now))),
        Route("GET", "/v1/firewalls", _answer(200, lambda c, r, _: c.firewalls.listing(r.query))),
        Route("GET", "/v1/firewalls/{id}", _answer(200, lambda c, r, _: c.firewalls.get(r.params["id"]))),
        Route("PUT", "/v1/firewalls/{id}", _answer(200, lambda c, r, _: c.firewalls.update(r.params["id"], r.body))),
        Route("DELETE", "/v1/firewalls/{id}", _answer(204, lambda c, r, _: c.firewalls.delete(r.params["id"]))),
        Route(
            "POST",
            "/v1/firewalls/{id}/actions/set_rules",
            _answer(201, lambda c, r, now: c.firewalls.set_rules(r.params["id"], r.body, now)),
        ),
        Route(
            "POST",
            "/v1/firewalls/{id}/actions/apply_to_resources",
            _answer(201, lambda c, r, now: c.firewalls.apply_to_resources(r.params["id"], r.body, now)),
        ),
        Route(
            "POST",
            "/v1/firewalls/{id}/actions/remove_from_resources",
            _answer(201, lambda c, r, now: c.firewalls.remove_from_resources(r.params["id"], r.body, now)),
        ),
        Route("GET", "/v1/locations", _answer(200, lambda c, r, _: c.list_locations(r.query))),
        Route("GET", "/v1/locations/{id}", _answer(200, lambda c, r, _: c.get_location(r.params["id"]))),
        Route("GET", "/v1/server_types", _answer(200, lambda c, r, _: c.list_server_types(r.query))),
        Route("GET", "/v1/server_types/{id}", _answer(200, lambda c, r, _: c.get_server_type(r.params["id"]))),
        Route("GET", "/v1/images", _answer(200, lambda c, r, _: c.list_images(r.query))),
        Route("GET", "/v1/images/{id}", _answer(200, lambda c, r, _: c.get_image(r.params["id"]))),
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
    if world.chance(faults.gateway_error_ratio):
        return _gateway_page(*world.rng.choice(_GATEWAY_PAGES))
    now = world.cloud.settle()
    try:
        _admit(world, request, now)
        response = handler(world.cloud, request, now)
    except HttpError as exc:
        response = exc.response
    if route_name == CREATE_SERVER and response.status == 201 and world.chance(faults.drop_create_response_ratio):
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

        def no_route(_cloud: HetznerCloud, _request: Request, _now: float) -> JsonResponse:
            raise error

        return None, no_route, request
    return route.name, route.handler, replace(request, params=params)


def _admit(world: World, request: Request, now: float) -> None:
    """Raise the error the request meets before it is processed: rate limit, authentication, injected errors."""
    faults = world.faults.hetzner
    message = f"limit of {world.rate_limit.capacity} requests per hour reached"
    if not world.rate_limit.take(now):
        raise api_error(429, "rate_limit_exceeded", message)
    if world.chance(faults.rate_limit_ratio):
        raise api_error(429, "rate_limit_exceeded", message, headers=world.rate_limit.empty_headers(now))
    if not hmac.compare_digest((request.bearer_token() or "").encode(), world.settings.token.encode()):
        raise api_error(401, "unauthorized", "unable to authenticate")
    if world.chance(faults.error_ratio):
        raise api_error(*world.rng.choice(_RETRYABLE_ERRORS))
    if world.chance(faults.unavailable_ratio):
        raise api_error(503, "unavailable", "the service is currently unavailable, please try again later")


def _gateway_page(status: int, reason: str) -> PageResponse:
    """The error page of a load balancer in front of the API (nginx's wording), not the API's error envelope."""
    title = f"{status} {reason}"
    page = (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n"
        "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )
    return PageResponse(status, "text/html", page.encode())


def _no_route_error(no_route: NoRoute) -> HttpError:
    if not no_route.allowed:
        return api_error(404, "not_found", "not found")
    return api_error(
        405, "method_not_allowed", "method not allowed", headers={"Allow": ", ".join(sorted(no_route.allowed))}
    )
