"""``HetznerCloudProvider``: the ``CloudProvider`` port on the Hetzner Cloud API, over ``httpx.AsyncClient``.

Every request goes through :class:`~smoke.adapters.hetzner.retry.RetryPolicy`, the create too: the caller adopts
a server by name, so a retried ``POST /servers`` whose first answer was lost (the server exists) and that now
answers ``uniqueness_error`` raises ``CloudServerNameTaken``, which is exactly what the caller handles.

Budget: every attempt is first spent from the project's :class:`~smoke.domain.ports.RequestBudget` (shared by the
workers of a deployment): reads (``GET``) wait while the bucket is low, writes go while it holds one request; each
answer's ``RateLimit-Limit``/``RateLimit-Remaining`` corrects it. A 429's headers are not taken as the level: the
simulated cloud's injected 429s claim an empty bucket that is not, and a real empty bucket shows in the next answer
that gets through. Actions are polled with backoff (1, 2, 4, 8, then every 10 s), not every half second.

Secrets: the token lives only in the client's default headers. Logs (``smoke.hetzner``) carry the method, the path
and query, the status and the retry waits; errors carry the API code and message. Neither carries headers, and no
driver exception leaves the adapter or hangs off a raised error as its cause or context.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

import httpx
import msgspec

from smoke.adapters.hetzner.retry import Failure, RetryPolicy, response_failure, transport_failure
from smoke.adapters.hetzner.wire import (
    ActionEnvelope,
    ActionJson,
    CreateFirewallRequest,
    CreateServerRequest,
    CreateServerResponse,
    FirewallEnvelope,
    FirewallJson,
    FirewallList,
    FirewallRef,
    FirewallRuleJson,
    ImageList,
    LocationList,
    ServerEnvelope,
    ServerJson,
    ServerList,
    ServerTypeList,
    SetRulesRequest,
    SshKeyList,
)
from smoke.domain.budget import RequestKind
from smoke.domain.errors import CloudError, CloudTransientError
from smoke.domain.models import CloudFirewall, CloudServer, FirewallRule, ServerSpec, ServerTypeOffer
from smoke.domain.ports import CloudProvider, RequestBudget

__all__ = ("HetznerCloudProvider", "hetzner_client")

logger = logging.getLogger("smoke.hetzner")

PER_PAGE = 50
IDEMPOTENT_RETRIES = frozenset({"unavailable"})
"""503 ``unavailable``: the official clients give up; a read or a rule update is safe to repeat, so it is retried."""
IDEMPOTENT_DELETE_RETRIES = frozenset({"unavailable", "locked"})
"""A delete meets ``locked`` while another action runs on the server (its create, say): it is retried, as Terraform
retries ``locked`` where it knows repeating is safe."""
BUDGET_RECHECK_SECONDS = 30.0
"""The longest a request waits for the budget before asking again (another worker's answer may have raised it)."""
T = TypeVar("T")
QueryParams = Mapping[str, str | int]


def hetzner_client(api_url: str, token: str, *, timeout: float = 30.0) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` for the Hetzner Cloud API; the caller closes it.

    Args:
        api_url: the API root including ``/v1``, e.g. ``https://api.hetzner.cloud/v1``.
        token: the project's API token, sent as ``Authorization: Bearer``.
        timeout: seconds for connecting, each read, each write and getting a pooled connection.
    """
    return httpx.AsyncClient(
        base_url=api_url,
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json", "User-Agent": "smoke"},
        timeout=httpx.Timeout(timeout),
    )


class HetznerCloudProvider(CloudProvider):
    """Servers at Hetzner Cloud.

    Args:
        client: an ``httpx.AsyncClient`` whose ``base_url`` is the API root including ``/v1`` and which sends the
            token (see :func:`hetzner_client`).
        max_retries: retries of a retryable failure after the first attempt.
        backoff_cap: the longest wait between two attempts, in seconds (at least 1).
        action_poll_interval: seconds before the first read of a running action; each next wait doubles, up to
            ``action_poll_cap``.
        action_poll_cap: the longest wait between two reads of a running action.
        action_timeout: seconds to wait for an action to end, its polls and their retries included.
        sleep: how to wait (tests inject one that does not).
        rng: source of the backoff jitter.
        clock: UNIX time in seconds, to read ``RateLimit-Reset`` against.
        budget: the project's request budget, shared with the other workers; None sends ungoverned.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        max_retries: int = 5,
        backoff_cap: float = 60.0,
        action_poll_interval: float = 1.0,
        action_poll_cap: float = 10.0,
        action_timeout: float = 300.0,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
        budget: RequestBudget | None = None,
    ) -> None:
        if max_retries < 0 or backoff_cap < 1 or action_poll_interval < 0 or action_timeout <= 0:
            raise ValueError("max_retries >= 0, backoff_cap >= 1, action_poll_interval >= 0, action_timeout > 0")
        self._client = client
        self._rng = rng or random.Random()
        self._retry = RetryPolicy(max_retries, backoff_cap, self._rng, clock)
        self._action_poll_interval = action_poll_interval
        self._action_poll_cap = max(action_poll_cap, action_poll_interval)
        self._action_timeout = action_timeout
        self._sleep = sleep
        self._budget = budget

    async def create_server(self, spec: ServerSpec) -> CloudServer:
        """``POST /servers``; returns on the 201 without waiting for the create and start actions."""
        body = CreateServerRequest(
            name=spec.name,
            server_type=spec.server_type,
            image=_name_or_id(spec.image),
            location=spec.location,
            labels=dict(spec.labels),
            user_data=spec.user_data,
            start_after_create=True,
            ssh_keys=[_name_or_id(key) for key in spec.ssh_keys],
            firewalls=[FirewallRef(firewall_id) for firewall_id in spec.firewall_ids],
        )
        response = await self._send("POST", "/servers", body=msgspec.json.encode(body), also_retried=frozenset())
        return _cloud_server(_decode(response, CreateServerResponse).server)

    async def get_server(self, server_id: int) -> CloudServer | None:
        """``GET /servers/{id}``; None on ``not_found`` (a bare 404, e.g. a wrong base URL, raises ``CloudError``)."""
        try:
            response = await self._send("GET", f"/servers/{server_id}")
        except CloudError as exc:
            if exc.code == "not_found":
                return None
            raise
        return _cloud_server(_decode(response, ServerEnvelope).server)

    async def find_servers(self, labels: Mapping[str, str]) -> list[CloudServer]:
        """``GET /servers?label_selector=k1=v1,k2=v2`` (sorted ``k=v`` terms, as hcloud-go builds them), every page."""
        params: dict[str, str | int] = {"per_page": PER_PAGE}
        if labels:
            params["label_selector"] = _selector(labels)
        servers: list[CloudServer] = []
        page: int | None = 1
        while page is not None:
            listing = _decode(await self._send("GET", "/servers", params={**params, "page": page}), ServerList)
            servers.extend(_cloud_server(server) for server in listing.servers)
            page = listing.next_page if listing.next_page is not None and listing.next_page > page else None
        return servers

    async def find_server_by_name(self, name: str) -> CloudServer | None:
        listing = _decode(await self._send("GET", "/servers", params={"name": name}), ServerList)
        return next((_cloud_server(server) for server in listing.servers if server.name == name), None)

    async def delete_server(self, server_id: int) -> bool:
        """``DELETE /servers/{id}``, then poll ``GET /actions/{id}`` until the ``delete_server`` action ends.

        Raises:
            CloudError: the action ended in ``error`` (its code and message).
            CloudTransientError: the action was still running after ``action_timeout`` seconds.
        """
        try:
            response = await self._send("DELETE", f"/servers/{server_id}", also_retried=IDEMPOTENT_DELETE_RETRIES)
        except CloudError as exc:
            if exc.code == "not_found":
                return False
            raise
        await self._wait_for(_decode(response, ActionEnvelope).action)
        return True

    async def server_type(self, name: str) -> ServerTypeOffer | None:
        """``GET /server_types?name=``; orderable where its ``locations`` entry is not ``available: false``."""
        listing = _decode(await self._send("GET", "/server_types", params={"name": name}), ServerTypeList)
        found = next((t for t in listing.server_types if t.name == name), None)
        if found is None:
            return None
        orderable = frozenset(loc.name for loc in found.locations if loc.available)
        return ServerTypeOffer(found.name, found.architecture, orderable)

    async def location_exists(self, name: str) -> bool:
        listing = _decode(await self._send("GET", "/locations", params={"name": name}), LocationList)
        return any(location.name == name for location in listing.locations)

    async def image_exists(self, image: str, architecture: str) -> bool:
        """By name: ``GET /images?name=&architecture=``; a numeric id (a snapshot): ``GET /images/{id}``."""
        if image.isdigit():
            return await self._exists(f"/images/{image}")
        params = {"name": image, "architecture": architecture, "include_deprecated": "true"}
        listing = _decode(await self._send("GET", "/images", params=params), ImageList)
        return any(found.name == image for found in listing.images)

    async def ssh_key_exists(self, name_or_id: str) -> bool:
        if name_or_id.isdigit():
            return await self._exists(f"/ssh_keys/{name_or_id}")
        listing = _decode(await self._send("GET", "/ssh_keys", params={"name": name_or_id}), SshKeyList)
        return any(key.name == name_or_id for key in listing.ssh_keys)

    async def find_firewalls(self, labels: Mapping[str, str]) -> list[CloudFirewall]:
        params: dict[str, str | int] = {"label_selector": _selector(labels), "per_page": PER_PAGE}
        listing = _decode(await self._send("GET", "/firewalls", params=params), FirewallList)
        return [_cloud_firewall(firewall) for firewall in listing.firewalls]

    async def create_firewall(
        self, name: str, labels: Mapping[str, str], rules: tuple[FirewallRule, ...]
    ) -> CloudFirewall:
        body = CreateFirewallRequest(name=name, labels=dict(labels), rules=[_rule_json(rule) for rule in rules])
        response = await self._send("POST", "/firewalls", body=msgspec.json.encode(body), also_retried=frozenset())
        return _cloud_firewall(_decode(response, FirewallEnvelope).firewall)

    async def set_firewall_rules(self, firewall_id: int, rules: tuple[FirewallRule, ...]) -> None:
        """``POST /firewalls/{id}/actions/set_rules``; the actions that apply them to servers are not waited for."""
        body = SetRulesRequest(rules=[_rule_json(rule) for rule in rules])
        await self._send("POST", f"/firewalls/{firewall_id}/actions/set_rules", body=msgspec.json.encode(body))

    async def _exists(self, path: str) -> bool:
        try:
            await self._send("GET", path)
        except CloudError as exc:
            if exc.code == "not_found":
                return False
            raise
        return True

    async def _wait_for(self, action: ActionJson) -> None:
        """Poll ``action`` until it ends; raise if it failed or outlasted ``action_timeout``."""
        interval = self._action_poll_interval
        try:
            async with asyncio.timeout(self._action_timeout):
                while action.status == "running":
                    await self._sleep(interval)
                    interval = min(interval * 2, self._action_poll_cap)
                    action = _decode(await self._send("GET", f"/actions/{action.id}"), ActionEnvelope).action
        except TimeoutError:
            message = f"action {action.id} still running after {self._action_timeout:g} s"
            raise CloudTransientError("action_timeout", message) from None
        if action.status != "success":
            error = action.error
            raise CloudError(error.code if error else "action_failed", error.message if error else action.status)

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: QueryParams | None = None,
        body: bytes | None = None,
        also_retried: frozenset[str] = IDEMPOTENT_RETRIES,
    ) -> httpx.Response:
        """Send with the retry policy; return the first 2xx answer, raise the domain error of the last failure.

        ``also_retried``: API codes retried here beyond the official clients' policy, where this request is safe to
        repeat (by default ``unavailable`` for reads; ``locked`` too for a delete; nothing for a create).
        """
        target = str(httpx.URL(path, params=params))
        retry = 0
        while True:
            outcome = await self._attempt(method, path, params, body, target)
            if isinstance(outcome, httpx.Response):
                return outcome
            if outcome.code in also_retried:
                outcome = dataclasses.replace(outcome, retryable=True)
            if not outcome.retryable or retry >= self._retry.max_retries:
                raise outcome.error(attempts=retry + 1)
            wait = self._retry.wait(retry, outcome)
            retry += 1
            logger.info(
                "Hetzner %s %s failed (%s); retry %d of %d in %.2f s",
                method,
                target,
                outcome.code,
                retry,
                self._retry.max_retries,
                wait,
            )
            await self._sleep(wait)

    async def _attempt(
        self, method: str, path: str, params: QueryParams | None, body: bytes | None, target: str
    ) -> httpx.Response | Failure:
        """One try: the 2xx answer, or why it failed (the driver exception is dropped here, see the module doc).

        ``target`` is how logs name the request: the path below the API root and the query.
        """
        headers = {"Content-Type": "application/json"} if body is not None else None
        request = self._client.build_request(method, path, params=params, content=body, headers=headers)
        ticket = await self._spend(RequestKind.READ if method == "GET" else RequestKind.WRITE, method, target)
        started = time.perf_counter()
        try:
            response = await self._client.send(request)
        except httpx.HTTPError as exc:
            failure = transport_failure(exc)
        else:
            elapsed_ms = (time.perf_counter() - started) * 1000
            logger.debug("Hetzner %s %s -> %d (%.0f ms)", method, target, response.status_code, elapsed_ms)
            outcome = response if response.is_success else response_failure(response)
            if not isinstance(outcome, Failure) or outcome.code != "rate_limit_exceeded":
                await self._correct(ticket, response)
            return outcome
        logger.debug("Hetzner %s %s -> no answer (%s)", method, target, failure.message)
        return failure

    async def _spend(self, kind: RequestKind, method: str, target: str) -> int:
        """Wait until the budget grants a request of ``kind``; its ticket (0 ungoverned)."""
        if self._budget is None:
            return 0
        while not (spend := await self._budget.spend(kind)).granted:
            wait = min(spend.wait, BUDGET_RECHECK_SECONDS) * self._rng.uniform(1.0, 1.25)
            logger.debug("Hetzner %s %s waits %.1f s for the request budget", method, target, wait)
            await self._sleep(wait)
        return spend.ticket

    async def _correct(self, ticket: int, response: httpx.Response) -> None:
        if self._budget is None:
            return
        try:
            capacity = int(response.headers["RateLimit-Limit"])
            remaining = int(response.headers["RateLimit-Remaining"])
        except (KeyError, ValueError):
            return
        await self._budget.correct(ticket, capacity, remaining)


def _decode(response: httpx.Response, type_: type[T]) -> T:
    try:
        return msgspec.json.decode(response.content, type=type_)
    except msgspec.DecodeError as exc:
        request = response.request
        message = f"unexpected answer to {request.method} {request.url.path}: {exc}"
        raise CloudError("invalid_response", message) from None


def _selector(labels: Mapping[str, str]) -> str:
    """``k1=v1,k2=v2`` with the terms sorted, as hcloud-go builds them."""
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def _name_or_id(reference: str) -> str | int:
    """The API takes images and SSH keys by name or by numeric id."""
    return int(reference) if reference.isdigit() else reference


def _rule_json(rule: FirewallRule) -> FirewallRuleJson:
    return FirewallRuleJson(
        direction="in", protocol="tcp", port=str(rule.port), source_ips=list(rule.source_ips), description="smoke agent"
    )


def _cloud_firewall(firewall: FirewallJson) -> CloudFirewall:
    rules = tuple(
        FirewallRule(int(rule.port), tuple(rule.source_ips))
        for rule in firewall.rules
        if rule.direction == "in" and rule.protocol == "tcp" and rule.port is not None and rule.port.isdigit()
    )
    return CloudFirewall(firewall.id, firewall.name, dict(firewall.labels), rules)


def _cloud_server(server: ServerJson) -> CloudServer:
    return CloudServer(server.id, server.name, server.status, dict(server.labels), server.ipv4)
