"""The simulated Hetzner Cloud project: servers, actions, SSH keys, firewalls, the catalogue, and the project's limits.

Time only moves when somebody looks: :meth:`HetznerCloud.settle` (called before every request, and by every read
the agents and the control API make) ends, in order, the actions whose end has passed on the injected clock, so no
background task is needed. The resources and their state machines are in :mod:`.servers`, :mod:`.actions`,
:mod:`.ssh_keys` and :mod:`.firewalls`; durations in :mod:`.timing`.

A server create is checked in this order: the body (400 ``json_error``, 422 ``invalid_input``), name, labels and
``user_data`` (422), ``datacenter``, server type, image (by ID, or by name for the type's architecture) and
location (422), ``ssh_keys`` and ``firewalls`` (422), the name (409 ``uniqueness_error``), the project's server
limit (403 ``resource_limit_exceeded``), a sold-out server type in that location (fault ``unavailable``: 412
``resource_unavailable``) and fault ``placement_error_ratio`` (422 ``placement_error``). Uniqueness comes before
the limit so that a create retried after its answer was lost meets ``uniqueness_error`` (and the caller adopts its
server) even when that server filled the project. With SSH keys the answer's ``root_password`` is null.

IDs are monotonic, never reused (even across ``/_sim/reset``) and as large as real ones: servers count from
118000001, actions from 3100000001 (past 2**31, as Hetzner's are), primary IPs from 95000001, SSH keys from
24000001, firewalls from 2100001.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from smoke.simulators.faults import HetznerFaults
from smoke.simulators.hetzner.actions import ActionLog
from smoke.simulators.hetzner.catalog import CATALOG, Image, Location, ServerType
from smoke.simulators.hetzner.errors import api_error, invalid_field, invalid_input, not_found
from smoke.simulators.hetzner.firewalls import Firewalls
from smoke.simulators.hetzner.listing import Query, paginate
from smoke.simulators.hetzner.servers import (
    POWER_COMMANDS,
    CreateServerRequest,
    Server,
    Servers,
    UpdateServerRequest,
    check_create_request,
)
from smoke.simulators.hetzner.ssh_keys import SshKeys
from smoke.simulators.hetzner.timing import Timing
from smoke.simulators.hetzner.validation import decode_request

__all__ = ("HetznerCloud", "IdSequences")

T = TypeVar("T")


@dataclass(slots=True)
class IdSequences:
    """ID counters that outlive a reset, so that a stale ID never names a new resource."""

    servers: Iterator[int] = field(default_factory=lambda: itertools.count(118_000_001))
    actions: Iterator[int] = field(default_factory=lambda: itertools.count(3_100_000_001))
    primary_ips: Iterator[int] = field(default_factory=lambda: itertools.count(95_000_001))
    ssh_keys: Iterator[int] = field(default_factory=lambda: itertools.count(24_000_001))
    firewalls: Iterator[int] = field(default_factory=lambda: itertools.count(2_100_001))


class HetznerCloud:
    """One Hetzner project. Methods answer the JSON bodies of the API and raise ``HttpError`` for its errors.

    Args:
        clock: UNIX time in seconds.
        timing: how long actions and boots take.
        ids: the ID counters.
        rng: source of root passwords and drawn durations.
        faults: the current Hetzner faults.
        chance: true with the given probability (drawn from the simulator's seeded generator).
        server_limit: how many servers the project may have at once; None for no limit.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        timing: Timing,
        ids: IdSequences,
        rng: random.Random,
        faults: Callable[[], HetznerFaults],
        chance: Callable[[float], bool],
        server_limit: int | None,
    ) -> None:
        self._clock = clock
        self._faults = faults
        self._chance = chance
        self._server_limit = server_limit
        self.actions = ActionLog(ids=ids.actions, fails=lambda: chance(faults().action_error_ratio))
        self.servers = Servers(
            actions=self.actions,
            timing=timing,
            server_ids=ids.servers,
            primary_ip_ids=ids.primary_ips,
            rng=rng,
            on_removed=lambda server: self.firewalls.forget(server),
        )
        self.ssh_keys = SshKeys(ids.ssh_keys)
        self.firewalls = Firewalls(
            servers=self.servers, actions=self.actions, timing=timing, ids=ids.firewalls, rng=rng
        )

    def settle(self) -> float:
        """End the actions whose end has passed; return the current time."""
        now = self._clock()
        self.actions.settle(now)
        return now

    def server(self, server_id: int) -> Server | None:
        """The server as it is now, or None once it is gone."""
        self.settle()
        return self.servers.get(server_id)

    def summaries(self) -> list[dict[str, object]]:
        """Every server, as ``GET /_sim/state`` lists them."""
        self.settle()
        return [server.summary() for server in self.servers.all()]

    # --- servers ------------------------------------------------------------------------------------------------

    def create_server(self, body: bytes, now: float) -> dict[str, object]:
        request = decode_request(body, CreateServerRequest)
        check_create_request(request)
        location, server_type, image = _resolve_catalog(request)
        ssh_keys = self.ssh_keys.resolve(request.ssh_keys)
        firewalls = self.firewalls.resolve([ref.firewall for ref in request.firewalls])
        self.servers.check_name_free(request.name)
        self._check_capacity(location, server_type)
        server, create, start = self.servers.create(request, location, server_type, image, now)
        self.firewalls.attach(firewalls, server, create)
        return {
            "server": self.server_json(server),
            "action": create.to_json(now),
            "next_actions": [] if start is None else [start.to_json(now)],
            "root_password": None if ssh_keys else self.servers.root_password(),
        }

    def get_server(self, server_id: int) -> dict[str, object]:
        return {"server": self.server_json(self.servers.existing(server_id))}

    def list_servers(self, query: Query) -> dict[str, object]:
        page, meta = self.servers.page(query)
        return {"servers": [self.server_json(server) for server in page], "meta": {"pagination": meta}}

    def update_server(self, server_id: int, body: bytes) -> dict[str, object]:
        server = self.servers.existing(server_id)
        self.servers.update(server, decode_request(body, UpdateServerRequest))
        return {"server": self.server_json(server)}

    def delete_server(self, server_id: int, now: float) -> dict[str, object]:
        return {"action": self.servers.delete(self.servers.existing(server_id), now).to_json(now)}

    def power(self, server_id: int, path: str, now: float) -> dict[str, object]:
        """``POST /servers/{id}/actions/<path>`` for one of :data:`~.servers.POWER_COMMANDS`."""
        server = self.servers.existing(server_id)
        return {"action": self.servers.power(server, POWER_COMMANDS[path], now).to_json(now)}

    def server_json(self, server: Server) -> dict[str, object]:
        return server.to_json(self.firewalls.of_server(server))

    # --- actions ------------------------------------------------------------------------------------------------

    def get_action(self, action_id: int, now: float, server_id: int | None = None) -> dict[str, object]:
        """One action; with ``server_id``, only if it concerns that server."""
        action = self.actions.get(action_id)
        if action is None or (server_id is not None and ("server", server_id) not in action.resources):
            raise not_found("action", action_id)
        return {"action": action.to_json(now)}

    def list_actions(self, query: Query, now: float) -> dict[str, object]:
        """``GET /actions?id=..``: the actions with those IDs (unknown IDs are left out)."""
        raw = query.get("id", [])
        if not raw or not all(value.isascii() and value.isdigit() for value in raw):
            raise invalid_field("id", "id is required and must be integers")
        return self.actions.page(self.actions.with_ids({int(value) for value in raw}), query, now)

    def list_server_actions(self, server_id: int, query: Query, now: float) -> dict[str, object]:
        self.servers.existing(server_id)
        return self.actions.page(self.actions.concerning(("server", server_id)), query, now)

    # --- catalogue ----------------------------------------------------------------------------------------------

    def server_type_json(self, server_type: ServerType) -> dict[str, object]:
        """The server type, ``available: false`` in the locations where fault ``unavailable`` sold it out."""
        sold_out = self._faults().unavailable
        return server_type.to_json(frozenset(p.location for p in sold_out if p.server_type == server_type.name))

    def get_server_type(self, server_type_id: int) -> dict[str, object]:
        if (server_type := CATALOG.server_type(server_type_id)) is None:
            raise not_found("server type", server_type_id)
        return {"server_type": self.server_type_json(server_type)}

    def list_server_types(self, query: Query) -> dict[str, object]:
        selected = _catalogue_selection(CATALOG.server_types, query, lambda t: {"name": t.name})
        page, meta = paginate(selected, query)
        return {"server_types": [self.server_type_json(t) for t in page], "meta": {"pagination": meta}}

    def get_location(self, location_id: int) -> dict[str, object]:
        if (location := CATALOG.location(location_id)) is None:
            raise not_found("location", location_id)
        return {"location": location.to_json()}

    def list_locations(self, query: Query) -> dict[str, object]:
        page, meta = paginate(_catalogue_selection(CATALOG.locations, query, lambda loc: {"name": loc.name}), query)
        return {"locations": [location.to_json() for location in page], "meta": {"pagination": meta}}

    def get_image(self, image_id: int) -> dict[str, object]:
        if (image := CATALOG.image_by_id(image_id)) is None:
            raise not_found("image", image_id)
        return {"image": image.to_json()}

    def list_images(self, query: Query) -> dict[str, object]:
        selected = _catalogue_selection(
            CATALOG.images, query, lambda img: {"name": img.name, "architecture": img.architecture, "type": "system"}
        )
        page, meta = paginate(selected, query)
        return {"images": [image.to_json() for image in page], "meta": {"pagination": meta}}

    def _check_capacity(self, location: Location, server_type: ServerType) -> None:
        if self._server_limit is not None and len(self.servers) >= self._server_limit:
            details = {"limits": [{"name": "server_limit"}]}
            raise api_error(403, "resource_limit_exceeded", "server limit exceeded", details)
        if self._faults().sold_out(location.name, server_type.name):
            raise api_error(412, "resource_unavailable", "error during placement")
        if self._chance(self._faults().placement_error_ratio):
            raise api_error(422, "placement_error", "error during placement")


def _catalogue_selection(entries: tuple[T, ...], query: Query, fields: Callable[[T], dict[str, str]]) -> list[T]:
    """The entries whose ``fields`` equal the query's value of each field it names (other parameters are ignored)."""
    return [
        entry
        for entry in entries
        if all(query[name][0] == value for name, value in fields(entry).items() if query.get(name))
    ]


def _resolve_catalog(request: CreateServerRequest) -> tuple[Location, ServerType, Image]:
    if request.datacenter is not None:
        raise invalid_input("datacenter", "datacenter is no longer supported, use location")
    if (server_type := CATALOG.server_type(request.server_type)) is None:
        raise invalid_input("server_type", f"server type '{request.server_type}' not found")
    if (image := CATALOG.image(request.image, server_type.architecture)) is None:
        raise invalid_input("image", f"image '{request.image}' not found")
    if image.architecture != server_type.architecture:
        message = f"image architecture {image.architecture} does not fit server type {server_type.name}"
        raise invalid_input("image", message)
    location = server_type.locations[0] if request.location is None else CATALOG.location(request.location)
    if location is None:
        raise invalid_input("location", f"location '{request.location}' not found")
    if location not in server_type.locations:
        raise invalid_input("server_type", "unsupported location for server type")
    return location, server_type, image
