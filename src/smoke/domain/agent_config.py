"""What an agent VPS is told at boot (SPEC §4): its cloud-init user data and where it is reached."""

from __future__ import annotations

import json
from typing import Final

from smoke.domain.models import Instance

__all__ = ("AGENT_CONFIG_PATH", "USAGE_PATH", "agent_base_url", "cloud_init")

AGENT_CONFIG_PATH: Final = "/etc/smoke-agent/config.json"
USAGE_PATH: Final = "/internal/v1/agent/usage-events"


def cloud_init(instance: Instance, agent_token: str, public_url: str) -> str:
    """``#cloud-config`` user data writing the agent's configuration to ``AGENT_CONFIG_PATH``.

    The JSON goes in a single-quoted YAML scalar (a quote inside is doubled), which cloud-init reads as is.
    """
    config = json.dumps(
        {
            "instance_id": str(instance.id),
            "agent_token": agent_token,
            "usage_url": public_url.rstrip("/") + USAGE_PATH,
            "manifest_id": instance.manifest_id,
        },
        separators=(", ", ": "),
    )
    quoted = "'" + config.replace("'", "''") + "'"
    return (
        f"#cloud-config\nwrite_files:\n  - path: {AGENT_CONFIG_PATH}\n    permissions: '0600'\n    content: {quoted}\n"
    )


def agent_base_url(template: str, instance: Instance) -> str:
    """The agent's base URL from ``AGENT_URL_TEMPLATE``: never from a caller, always from the stored server data."""
    return template.format(
        ipv4=instance.ipv4 or "",
        hostname=instance.hostname,
        instance_id=instance.id,
        provider_server_id=instance.provider_server_id or "",
    ).rstrip("/")
