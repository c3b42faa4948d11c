"""``CloudInitUserData``: the ``UserDataRenderer`` port as cloud-init ``#cloud-config``."""

from __future__ import annotations

import json

from smoke.domain.agent_config import AGENT_CONFIG_PATH
from smoke.domain.models import AgentBoot
from smoke.domain.ports import UserDataRenderer

__all__ = ("CloudInitUserData",)


class CloudInitUserData(UserDataRenderer):
    """Writes the agent's configuration to ``/etc/smoke-agent/config.json`` (mode 0600)."""

    def render(self, boot: AgentBoot) -> str:
        config = json.dumps(
            {
                "instance_id": str(boot.instance_id),
                "agent_token": boot.agent_token,
                "usage_url": boot.usage_url,
                "manifest_id": boot.manifest.id,
            },
            separators=(", ", ": "),
        )
        quoted = "'" + config.replace("'", "''") + "'"  # a single-quoted YAML scalar: a quote inside is doubled
        return (
            f"#cloud-config\nwrite_files:\n  - path: {AGENT_CONFIG_PATH}\n    permissions: '0600'\n"
            f"    content: {quoted}\n"
        )
