"""The smoke endpoints, for the one smoke customer: provision, poll, status, delete, chat, usage, events, list."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from litestar import Controller, delete, get, post
from litestar.exceptions import ValidationException
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, JSONBody, Parameter
from litestar.response import Stream

from smoke.api.auth import ops_bearer_check
from smoke.api.di import FromDishka, inject
from smoke.api.schemas import (
    IDEMPOTENCY_KEY_PATTERN,
    ChatCreate,
    DeleteRead,
    ErrorRead,
    EventRead,
    EventsRead,
    InstanceListRead,
    InstanceSummaryRead,
    LlmEventsRead,
    PollRead,
    ProvisionCreate,
    ProvisionRead,
    StatusRead,
    ValidationErrorRead,
)
from smoke.api.sse import relay
from smoke.domain.models import InstanceStatus, PageCursor, ProvisionRequest
from smoke.domain.services import ChatRelay, Deleter, InstanceLookup, ProvisionRequests, UsageReader
from smoke.settings import Settings

__all__ = ("SmokeController",)

BODY_LIMIT = 64 * 1024


def _errors(*statuses: int) -> dict[int, ResponseSpec]:
    descriptions = {
        401: "Missing, malformed or wrong bearer token",
        404: "No such instance for the smoke customer",
        409: "The action does not fit the instance's state, or the live-instance cap is reached",
        413: "Request body over 64 KiB",
        422: "Validation error",
        500: "Internal Server Error (never a traceback, never a secret)",
        502: "The agent VPS could not be reached or refused, before anything was streamed",
        503: "Database or queue unavailable",
    }
    return {
        status: ResponseSpec(
            data_container=ValidationErrorRead if status == 422 else ErrorRead,
            description=descriptions[status],
            generate_examples=False,
        )
        for status in (401, *statuses, 422, 500, 503)
    }


class SmokeController(Controller):
    path = "/internal/v1/smoke"
    before_request = staticmethod(ops_bearer_check)  # the guard of every smoke endpoint (a hook: see ops_bearer_check)
    request_max_body_size = BODY_LIMIT
    security = [{"BearerAuth": []}]
    tags = ["Smoke"]

    @post(
        "/provision",
        summary="Smoke Provision",
        operation_id="smoke_provision",
        status_code=200,
        responses=_errors(409, 413),
    )
    @inject
    async def provision(
        self, data: JSONBody[ProvisionCreate], requests: FromDishka[ProvisionRequests]
    ) -> ProvisionRead:
        """Provision a smoke instance through the provision job the customer endpoint uses.

        Customer, tenant and subscription come from settings: the body cannot name them. Idempotent per
        ``idempotency_key``: the same key and body answer the same response; the same key with another body is 422.
        """
        request = ProvisionRequest(data.idempotency_key, data.manifest_id, data.region_id, data.tier_id)
        receipt = await requests.submit(request)
        return ProvisionRead(receipt.idempotency_key, receipt.instance_id, receipt.task_id)

    @get(
        "/instances/by-key/{idempotency_key:str}",
        summary="Smoke Poll",
        operation_id="smoke_poll",
        responses=_errors(),
    )
    @inject
    async def poll(
        self,
        idempotency_key: Annotated[
            str,
            Parameter(
                min_length=1,
                max_length=255,
                pattern=IDEMPOTENCY_KEY_PATTERN,
                description="The key given to Smoke Provision",
            ),
        ],
        lookup: FromDishka[InstanceLookup],
    ) -> PollRead:
        """Resolve an idempotency key to its instance once the worker has inserted the instance row.

        ``found`` is false until then, and for a key never seen: poll this after a provision whose answer was lost.
        """
        result = await lookup.poll(idempotency_key)
        return PollRead(result.found, result.instance_id, result.status)

    @get(
        "/instances/{instance_id:str}",
        summary="Smoke Status",
        operation_id="smoke_status",
        responses=_errors(404),
    )
    @inject
    async def status(self, instance_id: FromPath[UUID], lookup: FromDishka[InstanceLookup]) -> StatusRead:
        """The instance's hostname and status; soft-deleted instances answer too (``deleting``, ``deleted``).

        An id that Smoke Provision allocated answers ``queued`` until the worker has inserted its row.
        """
        view = await lookup.status(instance_id)
        return StatusRead(view.hostname, view.id, view.status)

    @delete(
        "/instances/{instance_id:str}",
        summary="Smoke Delete",
        operation_id="smoke_delete",
        status_code=200,
        responses=_errors(404),
    )
    @inject
    async def delete(self, instance_id: FromPath[UUID], deleter: FromDishka[Deleter]) -> DeleteRead:
        """Soft-delete the instance and clean up its server: the customer delete recipe, in one transaction.

        Works in every state, also while the worker is still provisioning; a repeat answers the current status
        (``deleting`` or ``deleted``) and queues nothing new. The cleanup job deletes the server, then ``deleted``.
        """
        receipt = await deleter.delete(instance_id)
        return DeleteRead(receipt.instance_id, receipt.status)

    @get(
        "/instances/{instance_id:str}/llm-events",
        summary="Smoke Llm Events",
        operation_id="smoke_llm_events",
        responses=_errors(404),
    )
    @inject
    async def llm_events(
        self,
        instance_id: FromPath[UUID],
        usage: FromDishka[UsageReader],
        window_seconds: Annotated[int, Parameter(ge=1, le=86400, description="Window length in seconds")] = 900,
    ) -> LlmEventsRead:
        """Count the instance's ``llm_usage_events`` rows in the window, read from the authoritative table."""
        count = await usage.count(instance_id, window_seconds)
        return LlmEventsRead(count.count, instance_id, list(count.providers), window_seconds)

    @get(
        "/instances/{instance_id:str}/events",
        summary="Smoke Events",
        operation_id="smoke_events",
        responses=_errors(404),
    )
    @inject
    async def events(self, instance_id: FromPath[UUID], lookup: FromDishka[InstanceLookup]) -> EventsRead:
        """The instance's status history, oldest first, each change with its reason.

        It starts with ``queued`` (the request accepted) and says why a provision failed (``failed`` with the
        cloud's reason, e.g. ``Hetzner: resource_unavailable: ...``) or why a step is being retried.
        """
        events = await lookup.events(instance_id)
        return EventsRead(instance_id, [EventRead(e.created_at, e.status, e.reason) for e in events])

    @get(
        "/instances",
        summary="Smoke Instances",
        operation_id="smoke_instances",
        responses=_errors(),
    )
    @inject
    async def instances(
        self,
        lookup: FromDishka[InstanceLookup],
        status: Annotated[InstanceStatus | None, Parameter(description="Only instances in this status")] = None,
        limit: Annotated[int, Parameter(ge=1, le=200, description="Instances per page")] = 50,
        before: Annotated[
            str | None, Parameter(pattern=PageCursor.PATTERN, description="The next_before of the previous page")
        ] = None,
    ) -> InstanceListRead:
        """The smoke customer's instances, newest first, keyset-paginated: pass ``next_before`` as ``before``."""
        page = await lookup.page(status=status, limit=limit, before=_cursor(before))
        return InstanceListRead(
            [InstanceSummaryRead.of(summary) for summary in page.instances],
            None if page.next_before is None else page.next_before.encode(),
        )

    @post(
        "/instances/{instance_id:str}/chat",
        summary="Smoke Chat",
        operation_id="smoke_chat",
        status_code=200,
        media_type="text/event-stream",
        response_description="The agent's events, relayed one by one as they arrive",
        responses=_errors(404, 409, 413, 502),
    )
    @inject
    async def chat(
        self,
        instance_id: FromPath[UUID],
        data: JSONBody[ChatCreate],
        chat_relay: FromDishka[ChatRelay],
        settings: FromDishka[Settings],
    ) -> Stream:
        """One chat turn, streamed from the agent VPS as Server-Sent Events.

        Single consumer: no stream lock, no rate limiter, no renewal loop. Errors before the first byte are JSON
        (404, 409 unless ``running``, 502 agent unreachable); a failure after streaming began ends the stream with
        an ``error`` event.
        """
        turn = await chat_relay.open(instance_id, data.message)
        keepalive, turn_timeout = settings.sse_keepalive_seconds, settings.chat_turn_timeout_seconds
        events = relay(turn, keepalive=keepalive, turn_timeout=turn_timeout)
        return Stream(
            events,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )


def _cursor(before: str | None) -> PageCursor | None:
    if before is None:
        return None
    try:
        return PageCursor.decode(before)
    except ValueError as error:
        raise ValidationException(
            "Invalid before", extra=[{"source": "query", "key": "before", "message": str(error)}]
        ) from None
