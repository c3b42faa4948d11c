"""Agent tokens derived with HMAC: the control plane can present an agent's token without storing it."""

from __future__ import annotations

import base64
import hashlib
import hmac
from uuid import UUID

from smoke.domain.models import AgentToken
from smoke.domain.ports import TokenIssuer

__all__ = ("HmacTokenIssuer",)


class HmacTokenIssuer(TokenIssuer):
    """token = base64url(HMAC-SHA256(secret, instance id)); the database holds only SHA-256(token)."""

    def __init__(self, secret: str) -> None:
        self._key = secret.encode()

    def agent_token(self, instance_id: UUID) -> AgentToken:
        mac = hmac.new(self._key, b"smoke-agent:" + instance_id.bytes, hashlib.sha256).digest()
        token = base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
        return AgentToken(token, self.digest(token))

    def digest(self, token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()
