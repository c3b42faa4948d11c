"""The slice of Hetzner Cloud API JSON the adapter reads and writes; unknown keys are ignored."""

from __future__ import annotations

import msgspec

__all__ = (
    "ActionEnvelope",
    "ActionJson",
    "CreateServerRequest",
    "CreateServerResponse",
    "ErrorEnvelope",
    "ServerEnvelope",
    "ServerJson",
    "ServerList",
)


class CreateServerRequest(msgspec.Struct, frozen=True):
    """``POST /servers``. ``location`` only: ``datacenter`` is removed from the API."""

    name: str
    server_type: str
    image: str
    location: str
    labels: dict[str, str]
    user_data: str
    start_after_create: bool = True


class Ipv4Json(msgspec.Struct, frozen=True):
    ip: str


class PublicNetJson(msgspec.Struct, frozen=True):
    ipv4: Ipv4Json | None = None


class ServerJson(msgspec.Struct, frozen=True):
    id: int
    name: str
    status: str
    labels: dict[str, str] = {}
    public_net: PublicNetJson | None = None

    @property
    def ipv4(self) -> str | None:
        return None if self.public_net is None or self.public_net.ipv4 is None else self.public_net.ipv4.ip


class ServerEnvelope(msgspec.Struct, frozen=True):
    server: ServerJson


class CreateServerResponse(msgspec.Struct, frozen=True):
    """The 201 answer; its ``action`` and ``next_actions`` are not waited for."""

    server: ServerJson


class PaginationJson(msgspec.Struct, frozen=True):
    next_page: int | None = None


class MetaJson(msgspec.Struct, frozen=True):
    pagination: PaginationJson | None = None


class ServerList(msgspec.Struct, frozen=True):
    servers: list[ServerJson]
    meta: MetaJson | None = None

    @property
    def next_page(self) -> int | None:
        return None if self.meta is None or self.meta.pagination is None else self.meta.pagination.next_page


class ActionErrorJson(msgspec.Struct, frozen=True):
    code: str
    message: str = ""


class ActionJson(msgspec.Struct, frozen=True):
    """An action: ``status`` is ``running``, ``success`` or ``error`` (then ``error`` says why)."""

    id: int
    status: str
    error: ActionErrorJson | None = None


class ActionEnvelope(msgspec.Struct, frozen=True):
    action: ActionJson


class ErrorJson(msgspec.Struct, frozen=True):
    code: str
    message: str = ""


class ErrorEnvelope(msgspec.Struct, frozen=True):
    """``{"error": {"code", "message", "details"}}``; ``details`` is not needed to map the error."""

    error: ErrorJson
