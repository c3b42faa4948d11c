"""Servers: their requests, their JSON, and the state machine their actions drive.

A server created at ``t`` is ``initializing`` while ``create_server`` runs; when that succeeds its
``start_server`` next action begins, so the server is ``starting`` (``off`` when created with
``start_after_create=false``), then ``running``. Its agent answers a boot time after that (:mod:`.timing`).

Power actions need the server free of running actions (else ``423 locked``):

- ``poweron`` (``start_server``): ``starting`` -> ``running``; on a running server it changes nothing.
- ``poweroff`` (``stop_server``) and ``shutdown`` (``shutdown_server``): ``stopping`` -> ``off``; on a server that
  is not running they change nothing.
- ``reboot`` (``reboot_server``) and ``reset`` (``reset_server``): the status stays; a running server's agent is
  down from the start of the action until a boot time after its end.

A failed action (fault ``action_error_ratio``) puts the server back where it was: a failed ``create_server`` or
``start_server`` of a new server leaves it ``off``. A delete makes it ``deleting`` at once, whatever else runs;
when ``delete_server`` succeeds the server is gone (404, out of lists, name and IPs free); a failed delete restores
the status it would have had. Deleting a server that is already being deleted answers the running
``delete_server`` action again. ``PUT`` changes the name and labels at any time.

IPv4 addresses come from 203.0.113.0/24, then 198.51.100.0/24, round robin, unique among existing servers; IPv6
networks are ``2001:db8:<n>::/64``.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import msgspec

from smoke.simulators.hetzner.actions import Action, ActionLog
from smoke.simulators.hetzner.catalog import Image, Location, ServerType
from smoke.simulators.hetzner.errors import api_error, invalid_field, locked, not_found
from smoke.simulators.hetzner.listing import Query, first, paginate, sorted_by, statuses_filter
from smoke.simulators.hetzner.timestamps import rfc3339
from smoke.simulators.hetzner.timing import Timing
from smoke.simulators.hetzner.validation import check_labels, label_filter

__all__ = (
    "POWER_COMMANDS",
    "CreateServerRequest",
    "Server",
    "Servers",
    "UpdateServerRequest",
    "check_create_request",
)

SERVER_STATUSES = frozenset(
    {"initializing", "starting", "running", "stopping", "off", "deleting", "migrating", "rebuilding", "unknown"}
)
MAX_USER_DATA_BYTES = 32 * 1024
POWER_COMMANDS = {
    "poweron": "start_server",
    "poweroff": "stop_server",
    "shutdown": "shutdown_server",
    "reboot": "reboot_server",
    "reset": "reset_server",
}
"""``POST /servers/{id}/actions/<path>`` -> the command of the action it starts."""

_HOSTNAME_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_IPV4_ADDRESSES = tuple(f"203.0.113.{n}" for n in range(1, 255)) + tuple(f"198.51.100.{n}" for n in range(1, 255))
_PASSWORD_ALPHABET = string.ascii_letters + string.digits


class _PublicNetRequest(msgspec.Struct):
    enable_ipv4: bool = True
    enable_ipv6: bool = True


class FirewallRef(msgspec.Struct):
    firewall: int


class CreateServerRequest(msgspec.Struct):
    name: str
    server_type: str | int
    image: str | int
    location: str | int | None = None
    datacenter: str | int | None = None
    start_after_create: bool = True
    ssh_keys: list[str | int] = []
    firewalls: list[FirewallRef] = []
    user_data: str | None = None
    labels: dict[str, str] = {}
    public_net: _PublicNetRequest = msgspec.field(default_factory=_PublicNetRequest)


class UpdateServerRequest(msgspec.Struct):
    name: str | None = None
    labels: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class PrimaryIp:
    id: int
    ip: str


@dataclass(slots=True, eq=False)
class Server:
    """One server. ``state`` is what its power actions made of it; ``status`` shows ``deleting`` over it."""

    id: int
    name: str
    state: str
    created: float
    labels: dict[str, str]
    location: Location
    server_type: ServerType
    image: Image
    user_data: str | None
    ipv4: PrimaryIp | None
    ipv6: PrimaryIp | None
    boots_at: float | None = None
    delete_action: Action | None = None

    @property
    def status(self) -> str:
        return "deleting" if self.delete_action is not None else self.state

    def agent_is_up(self, now: float) -> bool:
        """Whether the agent on this server answers: it runs and has booted."""
        return self.status == "running" and self.boots_at is not None and now >= self.boots_at

    def to_json(self, firewalls: list[dict[str, object]]) -> dict[str, object]:
        """The API object; ``firewalls`` is its ``public_net.firewalls`` (``[{"id", "status"}]``)."""
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "created": rfc3339(self.created),
            "labels": dict(self.labels),
            "public_net": {
                "ipv4": None if self.ipv4 is None else _ipv4_json(self.ipv4),
                "ipv6": None if self.ipv6 is None else _ipv6_json(self.ipv6),
                "floating_ips": [],
                "firewalls": firewalls,
            },
            "private_net": [],
            "server_type": self.server_type.to_json(),
            "location": self.location.to_json(),
            "image": self.image.to_json(),
            "iso": None,
            "rescue_enabled": False,
            "locked": False,
            "backup_window": None,
            "outgoing_traffic": 0,
            "ingoing_traffic": 0,
            "included_traffic": self.location.included_traffic,
            "protection": {"delete": False, "rebuild": False},
            "primary_disk_size": self.server_type.disk,
            "placement_group": None,
            "volumes": [],
            "load_balancers": [],
        }

    def summary(self) -> dict[str, object]:
        """The server as ``GET /_sim/state`` lists it."""
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "labels": dict(self.labels),
            "location": self.location.name,
            "server_type": self.server_type.name,
            "image": self.image.name,
            "ipv4": None if self.ipv4 is None else self.ipv4.ip,
            "created": rfc3339(self.created),
        }


def _ipv4_json(address: PrimaryIp) -> dict[str, object]:
    reverse = ".".join(reversed(address.ip.split(".")))
    return {"id": address.id, "ip": address.ip, "blocked": False, "dns_ptr": f"static.{reverse}.clients.your-server.de"}


def _ipv6_json(address: PrimaryIp) -> dict[str, object]:
    return {"id": address.id, "ip": address.ip, "blocked": False, "dns_ptr": []}


def check_create_request(request: CreateServerRequest) -> None:
    """Raise 422 ``invalid_input`` for the first field of ``request`` the API would refuse on its own."""
    _check_name(request.name)
    check_labels(request.labels)
    if request.user_data is not None and len(request.user_data.encode()) > MAX_USER_DATA_BYTES:
        raise invalid_field("user_data", f"is too long (at most {MAX_USER_DATA_BYTES} bytes)")


def _check_name(name: str) -> None:
    """RFC 1123: dot-separated labels of letters, digits and inner dashes, at most 63 and 253 characters."""
    if not (0 < len(name) <= 253 and all(_HOSTNAME_LABEL.match(label) for label in name.split("."))):
        raise invalid_field("name", "Name must be a valid hostname.")


_SORT_KEYS: Mapping[str, Callable[[Server], object]] = {
    "id": lambda s: s.id,
    "name": lambda s: s.name,
    "created": lambda s: s.created,
}


class _AddressPool:
    def __init__(self) -> None:
        self._in_use: set[str] = set()
        self._next = 0

    def take(self) -> str | None:
        for offset in range(len(_IPV4_ADDRESSES)):
            index = (self._next + offset) % len(_IPV4_ADDRESSES)
            if _IPV4_ADDRESSES[index] not in self._in_use:
                self._in_use.add(_IPV4_ADDRESSES[index])
                self._next = index + 1
                return _IPV4_ADDRESSES[index]
        return None

    def release(self, address: str) -> None:
        self._in_use.discard(address)


class Servers:
    """The project's servers.

    Args:
        actions: the project's action log.
        timing: how long actions and boots take.
        server_ids: the server ID counter.
        primary_ip_ids: the primary IP ID counter.
        rng: source of root passwords and drawn durations.
        on_removed: called with each server once its delete has succeeded.
    """

    def __init__(
        self,
        *,
        actions: ActionLog,
        timing: Timing,
        server_ids: Iterator[int],
        primary_ip_ids: Iterator[int],
        rng: random.Random,
        on_removed: Callable[[Server], None],
    ) -> None:
        self._actions = actions
        self._timing = timing
        self._server_ids = server_ids
        self._primary_ip_ids = primary_ip_ids
        self._rng = rng
        self._on_removed = on_removed
        self._servers: dict[int, Server] = {}
        self._addresses = _AddressPool()

    def __len__(self) -> int:
        return len(self._servers)

    def all(self) -> list[Server]:
        return list(self._servers.values())

    def get(self, server_id: int) -> Server | None:
        return self._servers.get(server_id)

    def existing(self, server_id: int) -> Server:
        """The server with that ID; 404 ``not_found`` if there is none."""
        if (server := self._servers.get(server_id)) is None:
            raise not_found("server", server_id)
        return server

    def check_name_free(self, name: str, *, renamed: Server | None = None) -> None:
        """409 ``uniqueness_error`` if another server (a deleting one too) has ``name``."""
        if any(server.name == name and server is not renamed for server in self._servers.values()):
            raise api_error(409, "uniqueness_error", "server name is already used", {"fields": [{"name": "name"}]})

    def page(self, query: Query) -> tuple[Sequence[Server], dict[str, int | None]]:
        """The servers ``GET /servers`` lists for ``query`` (``name``, ``label_selector``, ``status``, sort, page)."""
        matches = label_filter(query)
        servers = [server for server in self._servers.values() if matches(server.labels)]
        if name := first(query, "name"):
            servers = [server for server in servers if server.name == name]
        if statuses := statuses_filter(query, SERVER_STATUSES):
            servers = [server for server in servers if server.status in statuses]
        return paginate(sorted_by(servers, query, _SORT_KEYS), query)

    def create(
        self, request: CreateServerRequest, location: Location, server_type: ServerType, image: Image, now: float
    ) -> tuple[Server, Action, Action | None]:
        """A new ``initializing`` server, its ``create_server`` action and the ``start_server`` that follows it."""
        server_id = next(self._server_ids)
        server = Server(
            id=server_id,
            name=request.name,
            state="initializing",
            created=now,
            labels=dict(request.labels),
            location=location,
            server_type=server_type,
            image=image,
            user_data=request.user_data,
            ipv4=self._new_ipv4() if request.public_net.enable_ipv4 else None,
            ipv6=self._new_ipv6(server_id) if request.public_net.enable_ipv6 else None,
        )
        self._servers[server.id] = server
        create = self._start("create_server", server, now, on_end=lambda a: _created(server, a))
        if not request.start_after_create:
            return server, create, None
        start = self._start(
            "start_server", server, now, after=create, on_end=lambda a: self._power_ended(server, a, "off")
        )
        return server, create, start

    def update(self, server: Server, request: UpdateServerRequest) -> None:
        if request.name is not None:
            _check_name(request.name)
            self.check_name_free(request.name, renamed=server)
        if request.labels is not None:
            check_labels(request.labels)
        server.name = request.name if request.name is not None else server.name
        server.labels = dict(request.labels) if request.labels is not None else server.labels

    def delete(self, server: Server, now: float) -> Action:
        if server.delete_action is None:
            server.delete_action = self._start("delete_server", server, now, on_end=lambda a: self._deleted(server, a))
        return server.delete_action

    def power(self, server: Server, command: str, now: float) -> Action:
        """Start the power action ``command`` (a value of :data:`POWER_COMMANDS`) on ``server``.

        Raises:
            HttpError: 423 ``locked`` while another action runs on the server.
        """
        if self._actions.locks(("server", server.id)):
            raise locked("server")
        before, boots_at = server.state, server.boots_at
        if command == "start_server" and before == "off":
            server.state = "starting"
        elif command in ("stop_server", "shutdown_server") and before == "running":
            server.state = "stopping"
        elif command in ("reboot_server", "reset_server"):
            server.boots_at = None
        return self._start(command, server, now, on_end=lambda a: self._power_ended(server, a, before, boots_at))

    def _power_ended(self, server: Server, action: Action, before: str, boots_at: float | None = None) -> None:
        """Move ``server`` on after the power action ``action`` ended; a failed one restores how it was."""
        if not action.succeeded:
            server.state, server.boots_at = before, boots_at
            return
        match action.command:
            case "start_server" if before != "running":
                server.state, server.boots_at = "running", self._booted_at(action)
            case "stop_server" | "shutdown_server":
                server.state, server.boots_at = "off", None
            case "reboot_server" | "reset_server" if server.state == "running":
                server.boots_at = self._booted_at(action)

    def _booted_at(self, action: Action) -> float:
        """When the agent of a server that started running at the end of ``action`` answers."""
        return action.ends_at + self._timing.boot.draw(self._rng)

    def _deleted(self, server: Server, action: Action) -> None:
        if not action.succeeded:
            server.delete_action = None
            return
        del self._servers[server.id]
        if server.ipv4 is not None:
            self._addresses.release(server.ipv4.ip)
        self._on_removed(server)

    def _start(
        self,
        command: str,
        server: Server,
        now: float,
        *,
        on_end: Callable[[Action], None],
        after: Action | None = None,
    ) -> Action:
        seconds = self._timing.action_seconds(command, self._rng)
        return self._actions.start(command, (("server", server.id),), now, seconds, after=after, on_end=on_end)

    def _new_ipv4(self) -> PrimaryIp:
        if (address := self._addresses.take()) is None:
            raise api_error(412, "resource_unavailable", "no IPv4 address left in the simulated ranges")
        return PrimaryIp(next(self._primary_ip_ids), address)

    def _new_ipv6(self, server_id: int) -> PrimaryIp:
        network = f"2001:db8:{server_id >> 16 & 0xFFFF:x}:{server_id & 0xFFFF:x}::/64"
        return PrimaryIp(next(self._primary_ip_ids), network)

    def root_password(self) -> str:
        return "".join(self._rng.choice(_PASSWORD_ALPHABET) for _ in range(20))


def _created(server: Server, action: Action) -> None:
    """``create_server`` ended: ``starting`` when its ``start_server`` follows, else (or if it failed) ``off``."""
    server.state = "starting" if action.succeeded and action.followed_by is not None else "off"
