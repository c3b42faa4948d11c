"""``CloudInitUserData``: the ``UserDataRenderer`` port as cloud-init ``#cloud-config`` (see ``cloud_init``)."""

from __future__ import annotations

from collections.abc import Mapping

from smoke.adapters.cloud_init import cloud_config
from smoke.domain.models import AgentBoot
from smoke.domain.ports import UserDataRenderer

__all__ = ("CloudInitUserData",)


class CloudInitUserData(UserDataRenderer):
    """The agent's configuration (docs/api.md) and, for a reference manifest, the reference agent and its unit.

    Args:
        llm_api_keys: setting name → value, for the ``api_key_setting`` of manifests with an ``llm`` backend; the
            key's value goes to the server in its configuration file (mode 0600), never to the database.
    """

    def __init__(self, llm_api_keys: Mapping[str, str] | None = None) -> None:
        self._llm_api_keys = dict(llm_api_keys or {})

    def render(self, boot: AgentBoot) -> str:
        manifest = boot.manifest
        config: dict[str, object] = {
            "instance_id": str(boot.instance_id),
            "agent_token": boot.agent_token,
            "usage_url": boot.usage_url,
            "manifest_id": manifest.id,
        }
        if manifest.llm is not None:
            config["llm"] = {
                "provider": manifest.llm.provider,
                "base_url": manifest.llm.base_url,
                "model": manifest.llm.model,
                "api_key": self._llm_api_keys.get(manifest.llm.api_key_setting, ""),
            }
        return cloud_config(
            agent_config=config,
            agent=manifest.agent.value,
            agent_port=manifest.agent_port,
            extra_user_data=manifest.user_data,
        )
