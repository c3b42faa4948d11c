"""How a virtual agent reports the LLM usage of a chat turn to the control plane."""

from __future__ import annotations

import uuid

import httpx

from smoke.simulators.agent.user_data import AgentConfig

__all__ = ("UsageReporter",)

_TIMEOUT = httpx.Timeout(10.0)


class UsageReporter:
    """``POST usage_url`` with the agent's bearer token; one HTTP client for every agent of the simulator."""

    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None

    async def report(self, config: AgentConfig, usage: dict[str, object]) -> str | None:
        """Report one LLM call under a new ``request_id``.

        Returns:
            None once ``usage_url`` answered 2xx, else why the report failed.
        """
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=_TIMEOUT)
        body = {"request_id": str(uuid.uuid4()), **usage}
        headers = {"Authorization": f"Bearer {config.agent_token}"}
        try:
            response = await self._client.post(config.usage_url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            return f"usage report failed: {type(exc).__name__}"
        if response.is_success:
            return None
        return f"usage report failed: HTTP {response.status_code}"

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
