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


class FirewallRef(msgspec.Struct, frozen=True):
    firewall: int


class CreateServerRequest(msgspec.Struct, frozen=True, omit_defaults=True):
    """``POST /servers``. ``location`` only: ``datacenter`` is removed from the API. Empty lists are left out."""

    name: str
    server_type: str
    image: str | int
    location: str
    labels: dict[str, str]
    user_data: str
    start_after_create: bool
    ssh_keys: list[str | int] = []
    firewalls: list[FirewallRef] = []


class ServerTypeLocationJson(msgspec.Struct, frozen=True):
    name: str
    available: bool = True
    """Inferred: not every copy of the docs shows it; absent means orderable."""


class ServerTypeJson(msgspec.Struct, frozen=True):
    name: str
    architecture: str = "x86"
    locations: list[ServerTypeLocationJson] = []
    deprecated: bool | None = None


class ServerTypeList(msgspec.Struct, frozen=True):
    server_types: list[ServerTypeJson]


class NamedJson(msgspec.Struct, frozen=True):
    """Any resource of which only the id and name are read (locations, images, SSH keys)."""

    id: int
    name: str | None = None


class LocationList(msgspec.Struct, frozen=True):
    locations: list[NamedJson]


class ImageList(msgspec.Struct, frozen=True):
    images: list[NamedJson]


class SshKeyList(msgspec.Struct, frozen=True):
    ssh_keys: list[NamedJson]


class FirewallRuleJson(msgspec.Struct, frozen=True, omit_defaults=True):
    direction: str
    protocol: str
    port: str | None = None
    source_ips: list[str] = []
    destination_ips: list[str] = []
    description: str | None = None


class FirewallJson(msgspec.Struct, frozen=True):
    id: int
    name: str
    labels: dict[str, str] = {}
    rules: list[FirewallRuleJson] = []


class FirewallEnvelope(msgspec.Struct, frozen=True):
    firewall: FirewallJson


class FirewallList(msgspec.Struct, frozen=True):
    firewalls: list[FirewallJson]
    meta: MetaJson | None = None


class CreateFirewallRequest(msgspec.Struct, frozen=True):
    name: str
    labels: dict[str, str]
    rules: list[FirewallRuleJson]


class SetRulesRequest(msgspec.Struct, frozen=True):
    rules: list[FirewallRuleJson]


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
