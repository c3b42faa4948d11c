"""Where an agent VPS is reached and where it reports usage (the agent protocol of docs/api.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from smoke.domain.models import Instance

__all__ = ("AGENT_CONFIG_PATH", "USAGE_PATH", "AgentUrls")

AGENT_CONFIG_PATH: Final = "/etc/smoke-agent/config.json"
USAGE_PATH: Final = "/internal/v1/agent/usage-events"


@dataclass(frozen=True, slots=True)
class AgentUrls:
    """``AGENT_URL_TEMPLATE``: the agent's base URL from the stored server data, never from a caller."""

    template: str

    def base_url(self, instance: Instance) -> str:
        """The base URL of the instance's agent, without a trailing slash."""
        return self.template.format(
            ipv4=instance.ipv4 or "",
            hostname=instance.hostname,
            instance_id=instance.id,
            provider_server_id=instance.provider_server_id or "",
        ).rstrip("/")
