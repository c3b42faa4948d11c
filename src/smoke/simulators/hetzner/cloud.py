"""The simulated Hetzner Cloud project: servers, their actions, and the state machine that drives them.

Time only moves when somebody looks: every public method first settles, in order, the actions whose end has
passed on the injected clock, so no background task is needed. With ``A`` the action duration, a server created
at ``t`` is ``initializing`` while ``create_server`` runs (``[t, t+A)``); when that succeeds its ``start_server``
next action begins at once, so the server is ``starting`` (``off`` when created with
``start_after_create=false``), and ``running`` from ``t+2A``. A delete makes it ``deleting`` at once; when
``delete_server`` succeeds ``A`` seconds later the server is gone (404, out of lists, name and IPs free).
Deleting a server that is already being deleted answers the running ``delete_server`` action again.

An action drawn to fail (fault ``action_error_ratio``, drawn when the action is created) ends in ``error`` with
``{"code": "action_failed", "message": "Action failed"}`` and rolls the server back: a failed ``create_server``
or ``start_server`` leaves it ``off`` (a failed create also fails the ``start_server`` that was to follow it),
a failed ``delete_server`` restores the status it had. Actions that end while their server is ``deleting``
change the status that a failed delete would restore.

IDs are monotonic and never reused, even across ``/_sim/reset``: servers count from 1001, actions from 1,
primary IPs from 501. IPv4 addresses come from 203.0.113.0/24, then 198.51.100.0/24, round robin, unique
among existing servers; IPv6 networks are ``2001:db8:<n>::/64``. ``ssh_keys`` are accepted without lookup.
"""

from __future__ import annotations

import itertools
import random
import re
import string
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec

from smoke.simulators.hetzner.catalog import CATALOG, Image, Location, ServerType
from smoke.simulators.hetzner.errors import api_error, invalid_input, not_found
from smoke.simulators.hetzner.labels import InvalidSelector, label_problem, parse_selector
from smoke.simulators.hetzner.listing import paginate, sorted_by, statuses_filter

__all__ = ("HetznerCloud", "IdSequences", "Server")

SERVER_STATUSES = frozenset(
    {"initializing", "starting", "running", "stopping", "off", "deleting", "migrating", "rebuilding", "unknown"}
)
ACTION_STATUSES = frozenset({"running", "success", "error"})
MAX_USER_DATA_BYTES = 32 * 1024
ACTION_FAILED = {"code": "action_failed", "message": "Action failed"}

_HOSTNAME_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_IPV4_ADDRESSES = tuple(f"203.0.113.{n}" for n in range(1, 255)) + tuple(f"198.51.100.{n}" for n in range(1, 255))
_PASSWORD_ALPHABET = string.ascii_letters + string.digits
_ERROR_FIELD = re.compile(r"(?:field `|`\$\.)(?P<field>\w+)")

Query = Mapping[str, list[str]]


def rfc3339(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(slots=True)
class IdSequences:
    """ID counters that outlive a reset, so that a stale ID never names a new resource."""

    servers: Iterator[int] = field(default_factory=lambda: itertools.count(1001))
    actions: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    primary_ips: Iterator[int] = field(default_factory=lambda: itertools.count(501))


class _PublicNetRequest(msgspec.Struct):
    enable_ipv4: bool = True
    enable_ipv6: bool = True


class _CreateServerRequest(msgspec.Struct):
    name: str
    server_type: str | int
    image: str | int
    location: str | int | None = None
    datacenter: str | int | None = None
    start_after_create: bool = True
    ssh_keys: list[str | int] = []
    user_data: str | None = None
    labels: dict[str, str] = {}
    public_net: _PublicNetRequest = msgspec.field(default_factory=_PublicNetRequest)


@dataclass(frozen=True, slots=True)
class PrimaryIp:
    id: int
    ip: str


@dataclass(slots=True)
class Action:
    id: int
    command: str
    server_id: int
    started: float
    runs_from: float
    ends_at: float
    fails: bool
    status: str = "running"
    finished: float | None = None
    followed_by: Action | None = None

    def progress(self, now: float) -> int:
        if self.status != "running":
            return 100
        if now <= self.runs_from or self.ends_at <= self.runs_from:
            return 0
        return min(99, int(100 * (now - self.runs_from) / (self.ends_at - self.runs_from)))

    def to_json(self, now: float) -> dict[str, object]:
        return {
            "id": self.id,
            "command": self.command,
            "status": self.status,
            "progress": self.progress(now),
            "started": rfc3339(self.started),
            "finished": None if self.finished is None else rfc3339(self.finished),
            "resources": [{"id": self.server_id, "type": "server"}],
            "error": ACTION_FAILED if self.status == "error" else None,
        }


@dataclass(slots=True)
class Server:
    id: int
    name: str
    status: str
    created: float
    labels: dict[str, str]
    location: Location
    server_type: ServerType
    image: Image
    user_data: str | None
    ipv4: PrimaryIp | None
    ipv6: PrimaryIp | None
    running_since: float | None = None
    status_before_delete: str = "off"
    delete_action: Action | None = None

    def to_json(self) -> dict[str, object]:
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
                "firewalls": [],
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

    def agent_is_up(self, now: float, boot_seconds: float) -> bool:
        """Whether the agent on this server answers: ``boot_seconds`` after the server began running."""
        return self.running_since is not None and self.status == "running" and now >= self.running_since + boot_seconds

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


_SERVER_SORT_KEYS: Mapping[str, Callable[[Server], object]] = {
    "id": lambda s: s.id,
    "name": lambda s: s.name,
    "created": lambda s: s.created,
}
_ACTION_SORT_KEYS: Mapping[str, Callable[[Action], object]] = {
    "id": lambda a: a.id,
    "command": lambda a: a.command,
    "status": lambda a: a.status,
    "started": lambda a: a.started,
    "finished": lambda a: (a.finished is None, a.finished or 0.0),
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


class HetznerCloud:
    """One Hetzner project. Methods answer the JSON bodies of the API and raise ``HttpError`` for its errors.

    Args:
        clock: UNIX time in seconds.
        action_seconds: how long every action runs.
        ids: the ID counters.
        rng: source of root passwords.
        action_fails: decides, when an action is created, whether it will fail.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        action_seconds: float,
        ids: IdSequences,
        rng: random.Random,
        action_fails: Callable[[], bool],
    ) -> None:
        self._clock = clock
        self._action_seconds = action_seconds
        self._ids = ids
        self._rng = rng
        self._action_fails = action_fails
        self._servers: dict[int, Server] = {}
        self._actions: dict[int, Action] = {}
        self._running: dict[int, Action] = {}
        self._addresses = _AddressPool()

    def create_server(self, body: bytes) -> dict[str, object]:
        now = self._advance()
        request = _decode_create_request(body)
        _check_create_request(request)
        location, server_type, image = _resolve_catalog(request)
        if any(server.name == request.name for server in self._servers.values()):
            raise api_error(409, "uniqueness_error", "server name is already used", {"fields": [{"name": "name"}]})
        server_id = next(self._ids.servers)
        server = Server(
            id=server_id,
            name=request.name,
            status="initializing",
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
        create = self._new_action("create_server", server.id, now, runs_from=now)
        if request.start_after_create:
            create.followed_by = self._new_action("start_server", server.id, now, runs_from=create.ends_at)
        return {
            "server": server.to_json(),
            "action": create.to_json(now),
            "next_actions": [] if create.followed_by is None else [create.followed_by.to_json(now)],
            "root_password": None if request.ssh_keys else self._root_password(),
        }

    def server(self, server_id: int) -> Server | None:
        """The server as it is now, or None once it is gone."""
        self._advance()
        return self._servers.get(server_id)

    def get_server(self, server_id: int) -> dict[str, object]:
        self._advance()
        return {"server": self._existing_server(server_id).to_json()}

    def list_servers(self, query: Query) -> dict[str, object]:
        self._advance()
        servers = list(self._servers.values())
        if name := _first(query, "name"):
            servers = [server for server in servers if server.name == name]
        if selector := _first(query, "label_selector"):
            matches = _selector(selector)
            servers = [server for server in servers if matches(server.labels)]
        if statuses := statuses_filter(query, SERVER_STATUSES):
            servers = [server for server in servers if server.status in statuses]
        page, meta = paginate(sorted_by(servers, query, _SERVER_SORT_KEYS), query)
        return {"servers": [server.to_json() for server in page], "meta": {"pagination": meta}}

    def delete_server(self, server_id: int) -> dict[str, object]:
        now = self._advance()
        server = self._existing_server(server_id)
        if server.delete_action is None:
            server.status_before_delete, server.status = server.status, "deleting"
            server.delete_action = self._new_action("delete_server", server.id, now, runs_from=now)
        return {"action": server.delete_action.to_json(now)}

    def get_action(self, action_id: int, server_id: int | None = None) -> dict[str, object]:
        """One action; with ``server_id``, only if it concerns that server."""
        now = self._advance()
        action = self._actions.get(action_id)
        if action is None or server_id not in (None, action.server_id):
            raise not_found("action", action_id)
        return {"action": action.to_json(now)}

    def list_actions(self, query: Query) -> dict[str, object]:
        """``GET /actions?id=..``: the actions with those IDs (unknown IDs are left out)."""
        now = self._advance()
        ids = _action_ids(query)
        return self._action_page(
            [action for action_id, action in self._actions.items() if action_id in ids], query, now
        )

    def list_server_actions(self, server_id: int, query: Query) -> dict[str, object]:
        now = self._advance()
        self._existing_server(server_id)
        return self._action_page([a for a in self._actions.values() if a.server_id == server_id], query, now)

    def summaries(self) -> list[dict[str, object]]:
        """Every server, as ``GET /_sim/state`` lists them."""
        self._advance()
        return [server.summary() for server in self._servers.values()]

    def _advance(self) -> float:
        now = self._clock()
        due = sorted((a for a in self._running.values() if a.ends_at <= now), key=lambda a: (a.ends_at, a.id))
        for action in due:
            if action.status == "running":
                self._settle(action)
        return now

    def _settle(self, action: Action) -> None:
        del self._running[action.id]
        action.status, action.finished = ("error" if action.fails else "success"), action.ends_at
        if (server := self._servers.get(action.server_id)) is not None:
            self._apply(action, server)
        if action.fails and action.followed_by is not None:
            action.followed_by.fails, action.followed_by.ends_at = True, action.ends_at
            self._settle(action.followed_by)

    def _apply(self, action: Action, server: Server) -> None:
        """Move ``server`` on after ``action`` ended (a failed action rolls it back)."""
        if action.command == "delete_server":
            if action.fails:
                server.status, server.delete_action = server.status_before_delete, None
            else:
                self._remove(server)
            return
        if action.command == "start_server" and not action.fails:
            status = "running"
        elif action.command == "create_server" and not action.fails and action.followed_by is not None:
            status = "starting"
        else:
            status = "off"
        server.running_since = action.ends_at if status == "running" else None
        if server.status == "deleting":
            server.status_before_delete = status
        else:
            server.status = status

    def _remove(self, server: Server) -> None:
        del self._servers[server.id]
        if server.ipv4 is not None:
            self._addresses.release(server.ipv4.ip)

    def _new_action(self, command: str, server_id: int, now: float, *, runs_from: float) -> Action:
        action = Action(
            id=next(self._ids.actions),
            command=command,
            server_id=server_id,
            started=now,
            runs_from=runs_from,
            ends_at=runs_from + self._action_seconds,
            fails=self._action_fails(),
        )
        self._actions[action.id] = action
        self._running[action.id] = action
        return action

    def _action_page(self, actions: list[Action], query: Query, now: float) -> dict[str, object]:
        if statuses := statuses_filter(query, ACTION_STATUSES):
            actions = [action for action in actions if action.status in statuses]
        page, meta = paginate(sorted_by(actions, query, _ACTION_SORT_KEYS), query)
        return {"actions": [action.to_json(now) for action in page], "meta": {"pagination": meta}}

    def _existing_server(self, server_id: int) -> Server:
        if (server := self._servers.get(server_id)) is None:
            raise not_found("server", server_id)
        return server

    def _new_ipv4(self) -> PrimaryIp:
        if (address := self._addresses.take()) is None:
            raise api_error(412, "resource_unavailable", "no IPv4 address left in the simulated ranges")
        return PrimaryIp(next(self._ids.primary_ips), address)

    def _new_ipv6(self, server_id: int) -> PrimaryIp:
        network = f"2001:db8:{server_id >> 16 & 0xFFFF:x}:{server_id & 0xFFFF:x}::/64"
        return PrimaryIp(next(self._ids.primary_ips), network)

    def _root_password(self) -> str:
        return "".join(self._rng.choice(_PASSWORD_ALPHABET) for _ in range(20))


def _decode_create_request(body: bytes) -> _CreateServerRequest:
    try:
        return msgspec.json.decode(body, type=_CreateServerRequest)
    except msgspec.ValidationError as exc:
        found = _ERROR_FIELD.search(str(exc))
        raise invalid_input(found["field"] if found else "body", str(exc)) from exc
    except msgspec.DecodeError as exc:
        raise api_error(400, "json_error", f"invalid JSON in request: {exc}") from exc


def _resolve_catalog(request: _CreateServerRequest) -> tuple[Location, ServerType, Image]:
    if request.datacenter is not None:
        raise invalid_input("datacenter", "datacenter is no longer supported, use location")
    if (server_type := CATALOG.server_type(request.server_type)) is None:
        raise invalid_input("server_type", f"server type '{request.server_type}' not found")
    if (image := CATALOG.image(request.image)) is None:
        raise invalid_input("image", f"image '{request.image}' not found")
    location = server_type.locations[0] if request.location is None else CATALOG.location(request.location)
    if location is None:
        raise invalid_input("location", f"location '{request.location}' not found")
    if location not in server_type.locations:
        raise invalid_input("server_type", "unsupported location for server type")
    return location, server_type, image


def _check_create_request(request: _CreateServerRequest) -> None:
    if not _is_hostname(request.name):
        raise invalid_input("name", "Name must be a valid hostname.")
    for key, value in request.labels.items():
        if problem := label_problem(key, value):
            raise invalid_input("labels", problem)
    if request.user_data is not None and len(request.user_data.encode()) > MAX_USER_DATA_BYTES:
        raise invalid_input("user_data", "user_data must not be larger than 32 KiB")


def _is_hostname(name: str) -> bool:
    """RFC 1123: dot-separated labels of letters, digits and inner dashes, at most 63 and 253 characters."""
    return 0 < len(name) <= 253 and all(_HOSTNAME_LABEL.match(label) for label in name.split("."))


def _selector(selector: str) -> Callable[[Mapping[str, str]], bool]:
    try:
        return parse_selector(selector)
    except InvalidSelector as exc:
        raise invalid_input("label_selector", str(exc)) from exc


def _action_ids(query: Query) -> frozenset[int]:
    raw = query.get("id", [])
    if not raw or not all(value.isascii() and value.isdigit() for value in raw):
        raise invalid_input("id", "id is required and must be integers")
    return frozenset(int(value) for value in raw)


def _first(query: Query, name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None
