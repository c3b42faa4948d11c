"""Request and response bodies of the API (msgspec). Field names and order are the contract CI clients parse."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final
from uuid import UUID

import msgspec
from msgspec import Meta

from smoke.domain.models import InstanceSummary

__all__ = (
    "IDEMPOTENCY_KEY_PATTERN",
    "PATTERN_MESSAGES",
    "ChatCreate",
    "DeleteRead",
    "ErrorRead",
    "EventRead",
    "EventsRead",
    "InstanceListRead",
    "InstanceSummaryRead",
    "LlmEventsRead",
    "PollRead",
    "ProvisionCreate",
    "ProvisionRead",
    "ReadinessRead",
    "StatusRead",
    "UsageEventCreate",
    "UsageRecordedRead",
    "ValidationErrorItem",
    "ValidationErrorRead",
)

TEXT_PATTERN: Final = r"^[^\x00]*$"
"""Text the database can store: PostgreSQL refuses U+0000 in text.

Every string field has it, so whatever reaches the database can be stored. A lone surrogate (no UTF-8 form) never
arrives: the JSON decoder refuses it (``json_invalid``) and paths and queries are decoded from UTF-8. Anything else a
client sends, control characters included, is accepted as it is and escaped where it is logged.
"""
IDEMPOTENCY_KEY_PATTERN: Final = r"^[^/\x00]*$"
"""Storable text without ``/``: a key must fit in one path segment of Smoke Poll."""
PATTERN_MESSAGES: Final = {
    TEXT_PATTERN: "String should not contain U+0000: the database cannot store it",
    IDEMPOTENCY_KEY_PATTERN: "String should not contain '/' (a key is one path segment) or U+0000",
}
"""The 422 ``msg`` of a string that does not match one of the patterns above: what it refuses, in words."""

IdempotencyKey = Annotated[str, Meta(min_length=1, max_length=255, pattern=IDEMPOTENCY_KEY_PATTERN)]


def _text(max_length: int) -> Meta:
    return Meta(min_length=1, max_length=max_length, pattern=TEXT_PATTERN)


class ProvisionCreate(msgspec.Struct, forbid_unknown_fields=True):
    """What CI may choose. Customer, tenant and subscription are not fields: they come from settings."""

    idempotency_key: IdempotencyKey
    manifest_id: Annotated[str, _text(100)]
    region_id: Annotated[str, _text(80)]
    tier_id: Annotated[str, _text(80)]


class ProvisionRead(msgspec.Struct):
    idempotency_key: str
    instance_id: UUID
    task_id: str


class PollRead(msgspec.Struct):
    found: bool
    instance_id: UUID | None
    status: str | None


class StatusRead(msgspec.Struct):
    hostname: str
    id: UUID
    status: str


class DeleteRead(msgspec.Struct):
    instance_id: UUID
    status: str


class LlmEventsRead(msgspec.Struct):
    count: int
    instance_id: UUID
    providers: list[str]
    window_seconds: int


class EventRead(msgspec.Struct):
    at: datetime
    status: str
    reason: str | None


class EventsRead(msgspec.Struct):
    instance_id: UUID
    events: list[EventRead]


class InstanceSummaryRead(msgspec.Struct):
    id: UUID
    hostname: str
    status: str
    manifest_id: str
    region_id: str
    tier_id: str
    created_at: datetime
    running_at: datetime | None
    deleted_at: datetime | None
    provision_seconds: float | None
    reason: str | None

    @classmethod
    def of(cls, summary: InstanceSummary) -> InstanceSummaryRead:
        return cls(
            id=summary.id,
            hostname=summary.hostname,
            status=summary.status,
            manifest_id=summary.manifest_id,
            region_id=summary.region_id,
            tier_id=summary.tier_id,
            created_at=summary.created_at,
            running_at=summary.running_at,
            deleted_at=summary.deleted_at,
            provision_seconds=summary.provision_seconds,
            reason=summary.reason,
        )


class InstanceListRead(msgspec.Struct):
    instances: list[InstanceSummaryRead]
    next_before: str | None


class ChatCreate(msgspec.Struct, forbid_unknown_fields=True):
    message: Annotated[str, _text(4000)]


class UsageEventCreate(msgspec.Struct, forbid_unknown_fields=True):
    """One LLM call, reported by the agent that made it."""

    request_id: Annotated[str, _text(128)]
    provider: Annotated[str, _text(64)]
    model: Annotated[str, _text(128)]
    input_tokens: Annotated[int, Meta(ge=0, le=2**31 - 1)]
    output_tokens: Annotated[int, Meta(ge=0, le=2**31 - 1)]


class UsageRecordedRead(msgspec.Struct):
    recorded: bool


class ReadinessRead(msgspec.Struct):
    status: str
    unavailable: list[str]


class ErrorRead(msgspec.Struct):
    detail: str


class ValidationErrorItem(msgspec.Struct):
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorRead(msgspec.Struct):
    detail: list[ValidationErrorItem]
