"""``/agents/{server_id}/...``: the virtual agent of each server (the agent protocol of docs/api.md).

``GET /agents/{id}/healthz`` answers 200 ``{"status": "ok"}`` once the server is ``running`` and
``boot_seconds`` have passed since it began running, 503 before, 404 for a server that does not exist.
``POST /agents/{id}/v1/chat`` checks, in order: booted (503), configured by its user data (503, see
:mod:`smoke.simulators.agent.user_data`), ``Authorization: Bearer <agent_token>`` (401), body
``{"message": str}`` (422); then streams one ``delta`` per whitespace-separated word, ``token_delay_ms`` apart,
reports the turn to ``usage_url`` and ends with ``done`` (usage answered 2xx) or ``error``. Event ids count from
1. Error bodies are ``{"detail": str}``. The ``down`` fault makes every agent path answer 503.

With ``--agents process`` (:mod:`.processes`, :mod:`.proxy`) the server's own agent process answers instead: after
the same 404 (no such server) and 503 (not booted yet, or fault ``down``) checks, any method and path under
``/agents/{id}/`` is relayed to it, and 503 says why when nothing runs there (no service in the user data, a
service that exited or could not be started). ``fail_mid_stream_ratio`` applies to both modes;
``token_delay_ms`` only to the inline agent (a process agent streams at its own pace). Requests are counted by
route as in the inline mode; a path of neither route as ``"<METHOD> /agents/{server_id}/..."``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
from collections.abc import AsyncGenerator, Callable
from dataclasses import replace

import msgspec

from smoke.simulators.agent.processes import ProcessAgents
from smoke.simulators.agent.proxy import AgentProxy
from smoke.simulators.agent.usage import UsageReporter
from smoke.simulators.agent.user_data import AgentConfig, parse_agent_config
from smoke.simulators.asgi import (
    DropConnection,
    EventStream,
    HttpError,
    JsonResponse,
    NoRoute,
    Request,
    Response,
    Route,
    Router,
)
from smoke.simulators.hetzner.servers import Server
from smoke.simulators.world import ChatRecord, World

__all__ = ("AgentApi",)

PROVIDER = "simulated"
MODEL = "echo-1"

Handler = Callable[[World, Request], Response]

_AGENT_PATH = re.compile(r"^/agents/(?P<server_id>[0-9]{1,18})(?P<path>/.*)?$")


class _ChatRequest(msgspec.Struct):
    message: str


class AgentApi:
    """The agents of every server: inline echo agents, or (given ``processes``) each server's own process."""

    def __init__(self, reporter: UsageReporter, processes: ProcessAgents | None = None) -> None:
        self._reporter = reporter
        self._processes = processes
        self._proxy = AgentProxy()
        self._router = Router[Handler](
            [
                Route("GET", "/agents/{server_id}/healthz", self._healthz),
                Route("POST", "/agents/{server_id}/v1/chat", self._chat),
            ]
        )

    async def handle(self, world: World, request: Request) -> Response:
        if self._processes is not None:
            return await self._relayed(world, request, self._processes)
        try:
            route, params = self._router.match(request.method, request.path)
        except NoRoute as exc:
            return _error(405 if exc.allowed else 404, "method not allowed" if exc.allowed else "not found")
        world.request_counts[route.name] += 1
        if world.faults.agent.down:
            return _error(503, "the agent is down")
        try:
            return route.handler(world, replace(request, params=params))
        except HttpError as exc:
            return exc.response

    async def aclose(self) -> None:
        await self._proxy.aclose()

    async def _relayed(self, world: World, request: Request, processes: ProcessAgents) -> Response:
        """The request relayed to the server's agent process, or why it cannot be."""
        found = _AGENT_PATH.match(request.path)
        if found is None:
            return _error(404, "not found")
        try:
            name = self._router.match(request.method, request.path)[0].name
        except NoRoute:
            name = f"{request.method} /agents/{{server_id}}/..."
        world.request_counts[name] += 1
        if world.faults.agent.down:
            return _error(503, "the agent is down")
        server_id = int(found["server_id"])
        try:
            _booted_server(world, server_id)
        except HttpError as exc:
            return exc.response
        port, reason = processes.address(server_id)
        if port is None:
            return _error(503, reason)
        return await self._proxy.forward(world, server_id, port, found["path"] or "/", request)

    def _healthz(self, world: World, request: Request) -> Response:
        _booted_server(world, request.params["server_id"])
        return JsonResponse(200, {"status": "ok"})

    def _chat(self, world: World, request: Request) -> Response:
        server = _booted_server(world, request.params["server_id"])
        config = parse_agent_config(server.user_data)
        if config is None:
            raise HttpError(_error(503, "the agent has no configuration in its user data"))
        if not hmac.compare_digest((request.bearer_token() or "").encode(), config.agent_token.encode()):
            raise HttpError(_error(401, "Not authenticated", {"WWW-Authenticate": "Bearer"}))
        try:
            message = msgspec.json.decode(request.body, type=_ChatRequest).message
        except msgspec.DecodeError as exc:
            raise HttpError(_error(422, f"invalid chat request: {exc}")) from exc
        record = ChatRecord(server_id=server.id, message=message, started_at=world.settings.clock())
        world.chats.append(record)
        drop = world.chance(world.faults.agent.fail_mid_stream_ratio)
        return EventStream(self._turn(world, config, record, drop_after_first_delta=drop))

    async def _turn(
        self, world: World, config: AgentConfig, record: ChatRecord, *, drop_after_first_delta: bool
    ) -> AsyncGenerator[bytes, None]:
        """Echo the message word by word, report usage, end with ``done`` or ``error``; keep ``record`` up to date."""
        words = record.message.split()
        delay = world.faults.agent.token_delay_ms / 1000
        outcome = "client_disconnected"
        try:
            for number, word in enumerate(words, start=1):
                if number > 1:
                    await asyncio.sleep(delay)
                yield _event("delta", number, {"text": word if number == 1 else f" {word}"})
                if drop_after_first_delta:
                    outcome = "dropped_by_fault"
                    raise DropConnection
            usage = {"provider": PROVIDER, "model": MODEL, "input_tokens": len(words), "output_tokens": len(words)}
            if (problem := await self._reporter.report(config, usage)) is None:
                yield _event("done", len(words) + 1, {"usage": usage})
                outcome = "done"
            else:
                yield _event("error", len(words) + 1, {"detail": problem})
                outcome = "usage_report_failed"
        finally:
            record.end(outcome, world.settings.clock())


def _booted_server(world: World, server_id: int) -> Server:
    server = world.cloud.server(server_id)
    if server is None:
        raise HttpError(_error(404, f"no server with ID {server_id}"))
    if not server.agent_is_up(world.settings.clock()):
        raise HttpError(_error(503, "the agent is not up yet"))
    return server


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> JsonResponse:
    return JsonResponse(status, {"detail": detail}, headers or {})


def _event(name: str, number: int, data: dict[str, object]) -> bytes:
    return f"event: {name}\nid: {number}\ndata: {json.dumps(data)}\n\n".encode()
