"""Fault injection knobs of the simulated cloud, as read with ``GET /_sim/faults`` and set with ``PUT /_sim/faults``."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from smoke.simulators.hetzner.catalog import CATALOG

__all__ = ("AgentFaults", "Faults", "HetznerFaults", "InvalidFaults", "SoldOut", "apply_patch")

Ratio = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Milliseconds = Annotated[int, msgspec.Meta(ge=0, le=600_000)]


class SoldOut(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A server type that cannot be ordered in a location for now."""

    location: str
    server_type: str


class HetznerFaults(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What goes wrong under ``/v1``.

    Attributes:
        latency_ms: delay before every ``/v1`` request is processed.
        rate_limit_ratio: share of requests answered 429 ``rate_limit_exceeded`` before processing, with the
            ``RateLimit-*`` headers of an empty bucket.
        error_ratio: share of requests answered 409 ``conflict``, 502 ``bad_gateway`` or 504 ``timeout``
            (picked at random) before processing.
        unavailable_ratio: share of requests answered 503 ``unavailable`` before processing.
        gateway_error_ratio: share of requests answered, before they reach the API, by a load balancer's HTML
            502 or 504 page (no API error envelope, no API headers).
        drop_create_response_ratio: share of ``POST /v1/servers`` that create the server and then close the
            connection without answering.
        placement_error_ratio: share of otherwise valid ``POST /v1/servers`` refused with 422 ``placement_error``.
        unavailable: server types sold out in a location: a create of that pair is refused with 412
            ``resource_unavailable``, and the server type shows ``available: false`` there.
        action_error_ratio: share of new actions that end in ``error`` and roll the server back.
    """

    latency_ms: Milliseconds = 0
    rate_limit_ratio: Ratio = 0.0
    error_ratio: Ratio = 0.0
    unavailable_ratio: Ratio = 0.0
    gateway_error_ratio: Ratio = 0.0
    drop_create_response_ratio: Ratio = 0.0
    placement_error_ratio: Ratio = 0.0
    unavailable: tuple[SoldOut, ...] = ()
    action_error_ratio: Ratio = 0.0

    def sold_out(self, location: str, server_type: str) -> bool:
        return SoldOut(location, server_type) in self.unavailable


class AgentFaults(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What goes wrong under ``/agents``.

    Attributes:
        token_delay_ms: pause between two streamed events of a chat.
        down: every agent endpoint answers 503.
        fail_mid_stream_ratio: share of chats whose connection is cut right after the first ``delta``.
    """

    token_delay_ms: Milliseconds
    down: bool = False
    fail_mid_stream_ratio: Ratio = 0.0


class Faults(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    hetzner: HetznerFaults
    agent: AgentFaults

    @classmethod
    def none(cls, token_delay_ms: int) -> Faults:
        """No fault at all, with the simulator's configured pause between chat events."""
        return cls(HetznerFaults(), AgentFaults(token_delay_ms=token_delay_ms))


class InvalidFaults(ValueError):
    """The fault patch is malformed, names an unknown knob or has a value out of range."""


def apply_patch(current: Faults, patch: bytes) -> Faults:
    """``current`` with the knobs named in the JSON ``patch`` (any subset) changed; a list replaces the old one.

    Raises:
        InvalidFaults: see the class; also a sold-out pair naming a location or server type the catalogue lacks.
    """
    try:
        sections = msgspec.json.decode(patch, type=dict[str, dict[str, Any]])
        merged: dict[str, dict[str, Any]] = msgspec.to_builtins(current)
        for name, changes in sections.items():
            merged[name] = {**merged.get(name, {}), **changes}
        faults = msgspec.convert(merged, Faults)
    except msgspec.DecodeError as exc:  # also msgspec.ValidationError
        raise InvalidFaults(str(exc)) from exc
    locations = {location.name for location in CATALOG.locations}
    server_types = {server_type.name for server_type in CATALOG.server_types}
    for pair in faults.hetzner.unavailable:
        if pair.location not in locations or pair.server_type not in server_types:
            raise InvalidFaults(f"hetzner.unavailable names an unknown location or server type: {pair}")
    return faults
