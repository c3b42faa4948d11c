"""The simulated cloud as one ASGI app: ``/v1`` (Hetzner), ``/agents`` (virtual agents), ``/_sim`` (control)."""

from __future__ import annotations

import time
from collections.abc import Callable

from smoke.simulators.agent.api import AgentApi
from smoke.simulators.agent.usage import UsageReporter
from smoke.simulators.asgi import (
    ASGIApp,
    JsonResponse,
    NoRoute,
    Receive,
    Request,
    Response,
    Route,
    Router,
    Scope,
    Send,
    read_request,
    send_response,
)
from smoke.simulators.faults import InvalidFaults, apply_patch
from smoke.simulators.hetzner.api import handle_hetzner
from smoke.simulators.hetzner.cloud import IdSequences
from smoke.simulators.hetzner.rate_limit import DEFAULT_CAPACITY
from smoke.simulators.hetzner.timing import Timing
from smoke.simulators.world import SimulatorSettings, World

__all__ = ("CloudSimulator", "create_cloud_simulator")


def create_cloud_simulator(
    *,
    token: str = "sim-token",  # noqa: S107 - the documented default of the simulator, not a secret
    action_seconds: float | None = None,
    boot_seconds: float | None = None,
    token_delay_ms: int = 20,
    seed: int | None = None,
    clock: Callable[[], float] | None = None,
    timing: str = "fast",
    server_limit: int | None = None,
    rate_limit: int = DEFAULT_CAPACITY,
) -> ASGIApp:
    """A new simulated cloud with its own in-memory state (see :mod:`smoke.simulators`).

    Args:
        token: the Hetzner API token it accepts.
        action_seconds: how long every Hetzner action runs; None for what ``timing`` says.
        boot_seconds: how long after a server is ``running`` its agent starts answering; None for ``timing``'s.
        token_delay_ms: pause between two events of a chat stream (fault ``agent.token_delay_ms`` overrides it).
        seed: seed of the random generator behind every fault and generated value; None for an unseeded one.
        clock: UNIX time in seconds; ``time.time`` by default. Actions, boots, timestamps, the rate limit and
            chat records follow it.
        timing: ``fast`` (every action and boot 1 s) or ``realistic`` (as long as at Hetzner, drawn with jitter;
            see :mod:`smoke.simulators.hetzner.timing`).
        server_limit: how many servers the project may have at once (403 ``resource_limit_exceeded`` past it);
            None for no limit.
        rate_limit: requests the project's bucket holds, and refills per hour.

    Raises:
        ValueError: an empty token, a negative duration or limit, an unknown timing or a rate limit below 1.
    """
    if not token:
        raise ValueError("the token must not be empty")
    if token_delay_ms < 0 or (server_limit is not None and server_limit < 0):
        raise ValueError("durations and the server limit must not be negative")
    if rate_limit < 1:
        raise ValueError("the rate limit must allow at least one request an hour")
    settings = SimulatorSettings(
        token=token,
        timing=Timing.named(timing, action_seconds=action_seconds, boot_seconds=boot_seconds),
        token_delay_ms=token_delay_ms,
        seed=seed,
        clock=clock or time.time,
        server_limit=server_limit,
        rate_limit=rate_limit,
    )
    return CloudSimulator(settings)


class CloudSimulator:
    """The ASGI app. It serves ``http`` and ``lifespan`` scopes; shutdown closes the agents' HTTP client."""

    def __init__(self, settings: SimulatorSettings) -> None:
        self._settings = settings
        self._ids = IdSequences()
        self._reporter = UsageReporter()
        self._agents = AgentApi(self._reporter)
        self._world = World(settings, self._ids)
        self._control = Router[Callable[[Request], JsonResponse]](
            [
                Route("GET", "/_sim/state", self._state),
                Route("POST", "/_sim/reset", self._reset),
                Route("GET", "/_sim/faults", self._faults),
                Route("PUT", "/_sim/faults", self._set_faults),
            ]
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            request = await read_request(scope, receive)
            await send_response(await self._respond(request), send, receive)

    async def _respond(self, request: Request) -> Response:
        if request.path == "/v1" or request.path.startswith("/v1/"):
            return await handle_hetzner(self._world, request)
        if request.path.startswith("/agents/"):
            return self._agents.handle(self._world, request)
        try:
            route, _ = self._control.match(request.method, request.path)
        except NoRoute as exc:
            return JsonResponse(
                405 if exc.allowed else 404, {"detail": "method not allowed" if exc.allowed else "not found"}
            )
        return route.handler(request)

    def _state(self, _request: Request) -> JsonResponse:
        return JsonResponse(200, self._world.state())

    def _reset(self, _request: Request) -> JsonResponse:
        """Back to no servers, no actions, no counts, no chats, no faults, a full rate limit and a re-seeded RNG."""
        self._world = World(self._settings, self._ids)
        return JsonResponse(200, self._world.state())

    def _faults(self, _request: Request) -> JsonResponse:
        return JsonResponse(200, self._world.faults)

    def _set_faults(self, request: Request) -> JsonResponse:
        try:
            self._world.faults = apply_patch(self._world.faults, request.body)
        except InvalidFaults as exc:
            return JsonResponse(422, {"detail": str(exc)})
        return JsonResponse(200, self._world.faults)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._reporter.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return
