"""What agent VPSes call: usage reports, authenticated by the agent token of their instance."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Controller, Request, post
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi import ResponseSpec
from litestar.params import JSONBody

from smoke.api.auth import not_authenticated, presented_bearer_token
from smoke.api.di import FromDishka, container_of, inject
from smoke.api.schemas import ErrorRead, UsageEventCreate, UsageRecordedRead, ValidationErrorRead
from smoke.domain.errors import UnknownAgentToken
from smoke.domain.models import UsageEvent
from smoke.domain.services import UsageRecorder

__all__ = ("AgentController",)

AGENT_INSTANCE = "agent_instance_id"


async def agent_token_guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:  # type: ignore[type-arg]
    """Admit an agent presenting its instance's current token; remember which instance it is."""
    token = presented_bearer_token(connection)
    recorder = await container_of(connection.app).get(UsageRecorder)
    try:
        if not token.isascii():  # agent tokens are ASCII: anything else is no agent's token
            raise UnknownAgentToken
        connection.state[AGENT_INSTANCE] = await recorder.authenticate(token.decode("ascii"))
    except UnknownAgentToken:
        raise not_authenticated() from None


class AgentController(Controller):
    path = "/internal/v1/agent"
    guards = [agent_token_guard]
    request_max_body_size = 64 * 1024
    security = [{"AgentToken": []}]
    tags = ["Agent"]

    @post(
        "/usage-events",
        summary="Agent Usage Event",
        operation_id="agent_usage_event",
        status_code=200,
        responses={
            401: ResponseSpec(ErrorRead, description="Unknown or revoked agent token", generate_examples=False),
            413: ResponseSpec(ErrorRead, description="Request body over 64 KiB", generate_examples=False),
            422: ResponseSpec(ValidationErrorRead, description="Validation error", generate_examples=False),
            503: ResponseSpec(ErrorRead, description="Database unavailable", generate_examples=False),
        },
    )
    @inject
    async def record_usage(
        self, request: Request[Any, Any, Any], data: JSONBody[UsageEventCreate], recorder: FromDishka[UsageRecorder]
    ) -> UsageRecordedRead:
        """Record one LLM call of the agent's instance; ``recorded`` is false when ``request_id`` was seen before."""
        instance_id: UUID = request.state[AGENT_INSTANCE]
        event = UsageEvent(
            instance_id, data.request_id, data.provider, data.model, data.input_tokens, data.output_tokens
        )
        return UsageRecordedRead(recorded=await recorder.record(event))
