"""Firewalls: ``/v1/firewalls``, their actions, and the ``public_net.firewalls`` each server lists.

A firewall applies to servers named one by one or to the servers a label selector matches (at every read). A
server named one by one lists it as ``pending`` while the action that applies it runs (``apply_firewall``, or the
server's ``create_server`` when the server was created with ``firewalls``), then ``applied``; a label selector's
servers list it as ``applied``. ``remove_from_resources`` takes a server off when its ``remove_firewall`` action
succeeds. ``set_rules`` replaces the rules at once and starts ``set_firewall_rules`` plus one ``apply_firewall``
per server the firewall applies to. A firewall applied to anything cannot be deleted (422 ``resource_in_use``); a
deleted server drops out of every firewall. The rules themselves are checked in :mod:`.firewall_rules`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

import msgspec

from smoke.simulators.hetzner.actions import Action, ActionLog, Resource
from smoke.simulators.hetzner.errors import api_error, invalid_field, not_found
from smoke.simulators.hetzner.firewall_rules import Rule, checked_rules
from smoke.simulators.hetzner.labels import InvalidSelector, LabelPredicate, parse_selector
from smoke.simulators.hetzner.listing import Query, first, paginate, sorted_by
from smoke.simulators.hetzner.servers import Server, Servers
from smoke.simulators.hetzner.timestamps import rfc3339
from smoke.simulators.hetzner.timing import Timing
from smoke.simulators.hetzner.validation import check_labels, decode_request, label_filter

__all__ = ("Firewall", "Firewalls")

MAX_NAME_LENGTH = 128


class _ResourceId(msgspec.Struct):
    id: int


class _LabelSelector(msgspec.Struct):
    selector: str


class _FirewallResource(msgspec.Struct):
    type: Literal["server", "label_selector"]
    server: _ResourceId | None = None
    label_selector: _LabelSelector | None = None


class _CreateRequest(msgspec.Struct):
    name: str
    labels: dict[str, str] = {}
    rules: list[Rule] = []
    apply_to: list[_FirewallResource] = []


class _UpdateRequest(msgspec.Struct):
    name: str | None = None
    labels: dict[str, str] | None = None


class _SetRulesRequest(msgspec.Struct):
    rules: list[Rule]


class _ApplyRequest(msgspec.Struct):
    apply_to: list[_FirewallResource]


class _RemoveRequest(msgspec.Struct):
    remove_from: list[_FirewallResource]


@dataclass(slots=True, eq=False)
class Firewall:
    """A firewall. ``servers`` maps each server it applies to one by one to the action applying it there."""

    id: int
    name: str
    labels: dict[str, str]
    created: float
    rules: list[dict[str, object]]
    servers: dict[int, Action] = field(default_factory=dict)
    selectors: dict[str, LabelPredicate] = field(default_factory=dict)

    def status_on(self, server: Server) -> str | None:
        """``pending`` or ``applied`` when this firewall applies to ``server``, else None."""
        if (applying := self.servers.get(server.id)) is not None:
            return "pending" if applying.status == "running" else "applied"
        if any(matches(server.labels) for matches in self.selectors.values()):
            return "applied"
        return None

    def to_json(self, servers: list[Server]) -> dict[str, object]:
        applied_to: list[dict[str, object]] = [
            {"type": "server", "server": {"id": server_id}} for server_id in self.servers
        ]
        for selector, matches in self.selectors.items():
            matched = [{"type": "server", "server": {"id": s.id}} for s in servers if matches(s.labels)]
            applied_to.append(
                {"type": "label_selector", "label_selector": {"selector": selector}, "applied_to_resources": matched}
            )
        return {
            "id": self.id,
            "name": self.name,
            "labels": dict(self.labels),
            "created": rfc3339(self.created),
            "rules": list(self.rules),
            "applied_to": applied_to,
        }


_SORT_KEYS: Mapping[str, Callable[[Firewall], object]] = {
    "id": lambda f: f.id,
    "name": lambda f: f.name,
    "created": lambda f: f.created,
}


class Firewalls:
    """The project's firewalls.

    Args:
        servers: the project's servers.
        actions: the project's action log.
        timing: how long firewall actions take.
        ids: the firewall ID counter.
        rng: source of drawn durations.
    """

    def __init__(
        self, *, servers: Servers, actions: ActionLog, timing: Timing, ids: Iterator[int], rng: random.Random
    ) -> None:
        self._servers = servers
        self._actions = actions
        self._timing = timing
        self._ids = ids
        self._rng = rng
        self._firewalls: dict[int, Firewall] = {}

    def create(self, body: bytes, now: float) -> dict[str, object]:
        request = decode_request(body, _CreateRequest)
        self._check_name(request.name)
        check_labels(request.labels)
        rules = checked_rules(request.rules)
        targets = self._targets(request.apply_to, missing_status=422)
        firewall = Firewall(next(self._ids), request.name, dict(request.labels), now, rules)
        self._firewalls[firewall.id] = firewall
        actions = [self._start("set_firewall_rules", firewall, None, now)] if rules else []
        actions += self._apply(firewall, targets, now)
        return {"firewall": self._json(firewall), "actions": [action.to_json(now) for action in actions]}

    def get(self, firewall_id: int) -> dict[str, object]:
        return {"firewall": self._json(self._existing(firewall_id))}

    def listing(self, query: Query) -> dict[str, object]:
        matches = label_filter(query)
        firewalls = [firewall for firewall in self._firewalls.values() if matches(firewall.labels)]
        if name := first(query, "name"):
            firewalls = [firewall for firewall in firewalls if firewall.name == name]
        page, meta = paginate(sorted_by(firewalls, query, _SORT_KEYS), query)
        return {"firewalls": [self._json(firewall) for firewall in page], "meta": {"pagination": meta}}

    def update(self, firewall_id: int, body: bytes) -> dict[str, object]:
        firewall = self._existing(firewall_id)
        request = decode_request(body, _UpdateRequest)
        if request.name is not None:
            self._check_name(request.name, renamed=firewall)
            firewall.name = request.name
        if request.labels is not None:
            check_labels(request.labels)
            firewall.labels = dict(request.labels)
        return {"firewall": self._json(firewall)}

    def delete(self, firewall_id: int) -> None:
        firewall = self._existing(firewall_id)
        if firewall.servers or firewall.selectors:
            raise api_error(422, "resource_in_use", "firewall is still applied to a resource")
        del self._firewalls[firewall.id]

    def set_rules(self, firewall_id: int, body: bytes, now: float) -> dict[str, object]:
        firewall = self._existing(firewall_id)
        firewall.rules = checked_rules(decode_request(body, _SetRulesRequest).rules)
        actions = [self._start("set_firewall_rules", firewall, None, now)]
        actions += [
            self._start("apply_firewall", firewall, server, now)
            for server in self._servers.all()
            if firewall.status_on(server) is not None
        ]
        return {"actions": [action.to_json(now) for action in actions]}

    def apply_to_resources(self, firewall_id: int, body: bytes, now: float) -> dict[str, object]:
        firewall = self._existing(firewall_id)
        targets = self._targets(decode_request(body, _ApplyRequest).apply_to, missing_status=404)
        for target in targets:
            if target in firewall.servers or target in firewall.selectors:
                raise api_error(422, "firewall_already_applied", "firewall is already applied to the resource")
        return {"actions": [action.to_json(now) for action in self._apply(firewall, targets, now)]}

    def remove_from_resources(self, firewall_id: int, body: bytes, now: float) -> dict[str, object]:
        firewall = self._existing(firewall_id)
        targets = self._targets(decode_request(body, _RemoveRequest).remove_from, missing_status=404)
        actions: list[Action] = []
        for target in targets:
            if isinstance(target, str):
                actions.append(self._start("remove_firewall", firewall, None, now, _unselect(firewall, target)))
                continue
            server = self._servers.existing(target)
            if target not in firewall.servers and firewall.status_on(server) is not None:
                message = "firewall is applied via a label selector and cannot be removed manually"
                raise api_error(422, "firewall_managed_by_label_selector", message)
            actions.append(self._start("remove_firewall", firewall, server, now, _unapply(firewall, target)))
        return {"actions": [action.to_json(now) for action in actions]}

    def resolve(self, firewall_ids: list[int]) -> list[Firewall]:
        """The firewalls a server create names; 422 for one that does not exist."""
        found: list[Firewall] = []
        for firewall_id in firewall_ids:
            if (firewall := self._firewalls.get(firewall_id)) is None:
                raise invalid_field("firewalls", f"firewall with ID '{firewall_id}' not found")
            found.append(firewall)
        return found

    def attach(self, firewalls: list[Firewall], server: Server, applying: Action) -> None:
        """Apply ``firewalls`` to a new ``server``; they are ``pending`` while ``applying`` (its create) runs."""
        for firewall in firewalls:
            firewall.servers[server.id] = applying

    def forget(self, server: Server) -> None:
        """A deleted server drops out of every firewall."""
        for firewall in self._firewalls.values():
            firewall.servers.pop(server.id, None)

    def of_server(self, server: Server) -> list[dict[str, object]]:
        """``public_net.firewalls`` of ``server``: ``[{"id", "status"}]``."""
        return [
            {"id": firewall.id, "status": status}
            for firewall in self._firewalls.values()
            if (status := firewall.status_on(server)) is not None
        ]

    def _apply(self, firewall: Firewall, targets: list[int | str], now: float) -> list[Action]:
        """Start applying ``firewall`` to each target: a server ID, or a label selector."""
        actions: list[Action] = []
        for target in targets:
            if isinstance(target, str):
                firewall.selectors[target] = parse_selector(target)
                actions.append(self._start("apply_firewall", firewall, None, now))
            else:
                server = self._servers.existing(target)
                action = self._start("apply_firewall", firewall, server, now, _undo_failed_apply(firewall, target))
                firewall.servers[target] = action
                actions.append(action)
        return actions

    def _start(
        self,
        command: str,
        firewall: Firewall,
        server: Server | None,
        now: float,
        on_end: Callable[[Action], None] | None = None,
    ) -> Action:
        resources: tuple[Resource, ...] = (("firewall", firewall.id),)
        if server is not None:
            resources = (("server", server.id), *resources)
        seconds = self._timing.action_seconds(command, self._rng)
        return self._actions.start(command, resources, now, seconds, on_end=on_end)

    def _targets(self, resources: list[_FirewallResource], *, missing_status: int) -> list[int | str]:
        """The server IDs and label selectors ``resources`` name, checked: each exists, none twice."""
        targets: list[int | str] = []
        for resource in resources:
            target = self._target(resource, missing_status)
            if target in targets:
                raise api_error(422, "server_already_added", f"resource {target} is named more than once")
            targets.append(target)
        return targets

    def _target(self, resource: _FirewallResource, missing_status: int) -> int | str:
        if resource.type == "label_selector":
            if resource.label_selector is None:
                raise invalid_field("label_selector", "a resource of type label_selector needs label_selector")
            try:
                parse_selector(resource.label_selector.selector)
            except InvalidSelector as exc:
                raise invalid_field("label_selector", str(exc)) from exc
            return resource.label_selector.selector
        if resource.server is None:
            raise invalid_field("server", "a resource of type server needs server")
        if self._servers.get(resource.server.id) is None:
            message = f"server with ID '{resource.server.id}' not found"
            raise api_error(missing_status, "firewall_resource_not_found", message)
        return resource.server.id

    def _json(self, firewall: Firewall) -> dict[str, object]:
        return firewall.to_json(self._servers.all())

    def _existing(self, firewall_id: int) -> Firewall:
        if (firewall := self._firewalls.get(firewall_id)) is None:
            raise not_found("firewall", firewall_id)
        return firewall

    def _check_name(self, name: str, *, renamed: Firewall | None = None) -> None:
        if not name.strip() or len(name) > MAX_NAME_LENGTH:
            raise invalid_field("name", f"must be 1 to {MAX_NAME_LENGTH} characters")
        if any(fw.name == name and fw is not renamed for fw in self._firewalls.values()):
            raise api_error(409, "uniqueness_error", "firewall name is already used", {"fields": [{"name": "name"}]})


def _undo_failed_apply(firewall: Firewall, server_id: int) -> Callable[[Action], None]:
    def on_end(action: Action) -> None:
        if not action.succeeded:
            firewall.servers.pop(server_id, None)

    return on_end


def _unapply(firewall: Firewall, server_id: int) -> Callable[[Action], None]:
    def on_end(action: Action) -> None:
        if action.succeeded:
            firewall.servers.pop(server_id, None)

    return on_end


def _unselect(firewall: Firewall, selector: str) -> Callable[[Action], None]:
    def on_end(action: Action) -> None:
        if action.succeeded:
            firewall.selectors.pop(selector, None)

    return on_end
