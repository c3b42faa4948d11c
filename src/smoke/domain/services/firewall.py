"""The agent firewall: one Hetzner firewall of the smoke customer that lets only the allowed ranges reach agents."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from smoke.domain.errors import CloudServerNameTaken, CloudTransientError
from smoke.domain.models import CustomerScope, FirewallRule
from smoke.domain.ports import CloudProvider

__all__ = ("AgentFirewall", "FirewallPolicy")

logger = logging.getLogger("smoke.firewall")


@dataclass(frozen=True, slots=True)
class FirewallPolicy:
    """What the agent firewall allows: the settings and the catalog's agent ports."""

    allowed_cidrs: tuple[str, ...]
    """``AGENT_ALLOWED_CIDRS``; empty: no firewall, the agent port is open behind its bearer token."""
    agent_ports: tuple[int, ...]
    """Every manifest's ``agent_port``."""

    def rules(self) -> tuple[FirewallRule, ...]:
        """Inbound TCP on each agent port from the allowed ranges only."""
        return tuple(FirewallRule(port, self.allowed_cidrs) for port in sorted(set(self.agent_ports)))


@dataclass(slots=True, kw_only=True)
class AgentFirewall:
    """Kept in shape: created when missing, its rules corrected when they differ, never deleted.

    Its id is remembered for the process after the first ``ensure``; ``forget`` (a create refused the id: someone
    deleted the firewall) makes the next ``ensure`` look again.
    """

    scope: CustomerScope
    policy: FirewallPolicy
    cloud: CloudProvider
    _id: int | None = field(default=None, init=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)

    @property
    def name(self) -> str:
        """The firewall's name: one per smoke customer, so two deployments sharing a project keep apart."""
        return f"smoke-agents-{self.scope.customer_id.hex[:12]}"

    async def ensure(self) -> tuple[int, ...]:
        """The firewall ids every server is created with: the agent firewall's, or none without allowed ranges."""
        if not self.policy.allowed_cidrs:
            return ()
        async with self._lock:
            if self._id is None:
                self._id = await self._shaped()
            return (self._id,)

    def forget(self) -> None:
        """Drop the remembered id: the next ``ensure`` looks the firewall up again."""
        self._id = None

    async def _shaped(self) -> int:
        labels = self.scope.labels()
        rules = self.policy.rules()
        found = await self.cloud.find_firewalls(labels)
        if not found:
            try:
                created = await self.cloud.create_firewall(self.name, labels, rules)
            except CloudServerNameTaken:  # another worker created it a moment ago: take that one
                found = await self.cloud.find_firewalls(labels)
                if not found:
                    raise CloudTransientError("uniqueness_error", "the agent firewall's name is taken") from None
            else:
                logger.info("created the agent firewall %s (%s): %s", created.id, created.name, _described(rules))
                return created.id
        firewall = min(found, key=lambda candidate: candidate.id)
        if set(firewall.rules) != set(rules):
            await self.cloud.set_firewall_rules(firewall.id, rules)
            logger.info("corrected the rules of the agent firewall %s: %s", firewall.id, _described(rules))
        return firewall.id


def _described(rules: tuple[FirewallRule, ...]) -> str:
    return "; ".join(f"tcp/{rule.port} from {', '.join(rule.source_ips)}" for rule in rules)
