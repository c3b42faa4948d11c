"""What can go wrong, as the domain names it. Adapters translate driver errors into these."""

from __future__ import annotations

__all__ = (
    "AgentStreamBroken",
    "AgentUnavailable",
    "CloudError",
    "CloudServerNameTaken",
    "CloudTransientError",
    "IdempotencyKeyReused",
    "InstanceNotFound",
    "InvalidState",
    "LiveInstanceCapReached",
    "SmokeError",
    "StorageUnavailable",
    "UnknownAgentToken",
    "UnknownCatalogEntry",
)


class SmokeError(Exception):
    """Base of every error the domain raises."""


class InstanceNotFound(SmokeError):
    """No instance of this customer has that id (whether it exists for another customer is never told)."""

    def __init__(self) -> None:
        super().__init__("Instance not found")


class IdempotencyKeyReused(SmokeError):
    """The key was accepted before with a different request body."""

    def __init__(self) -> None:
        super().__init__("This idempotency key was already used with a different request body")


class UnknownCatalogEntry(SmokeError):
    """A manifest, region or tier id the catalog does not know."""

    def __init__(self, field: str, value: str) -> None:
        self.field = field
        self.value = value
        super().__init__(f"Unknown {field.removesuffix('_id')} '{value}'")


class InvalidState(SmokeError):
    """The action does not fit the instance's state."""


class LiveInstanceCapReached(SmokeError):
    """Accepting one more provision would pass the live-instance cap."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        super().__init__(f"Live-instance cap reached: {cap} smoke instances are not deleted yet")


class StorageUnavailable(SmokeError):
    """The database or the queue cannot be reached; retrying later may succeed."""


class CloudError(SmokeError):
    """The cloud refused a request for good (not retryable); ``code`` is the provider's error code."""

    def __init__(self, code: str, message: str, *, provider: str = "cloud") -> None:
        self.code = code
        self.message = message
        self.provider = provider
        super().__init__(f"{message} ({code})")

    @property
    def reason(self) -> str:
        """One line for an operator: ``Hetzner: resource_unavailable: cpx22 is not available in fsn1``."""
        return f"{self.provider}: {self.code}: {self.message}"


class CloudTransientError(CloudError):
    """The cloud failed in a way that may pass (rate limit, 5xx, timeout) and retries were exhausted."""


class CloudServerNameTaken(CloudError):
    """A server of that name exists already (Hetzner ``uniqueness_error``)."""


class AgentUnavailable(SmokeError):
    """The agent VPS could not be reached or refused, before anything was streamed."""


class UnknownAgentToken(SmokeError):
    """An agent presented a token that is unknown or was revoked by a delete."""

    def __init__(self) -> None:
        super().__init__("Not authenticated")


class AgentStreamBroken(SmokeError):
    """The agent's stream failed after it began (connection lost, malformed, or ended without ``done``)."""
