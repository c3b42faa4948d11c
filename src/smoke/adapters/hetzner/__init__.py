"""Hetzner Cloud behind the ``CloudProvider`` port: httpx, the official clients' retry policy, private wire structs.

Build it with ``HetznerCloudProvider(hetzner_client(api_url, token))``; the caller owns (and closes) the client.
"""

from smoke.adapters.hetzner.provider import HetznerCloudProvider, hetzner_client
from smoke.adapters.hetzner.retry import RetryPolicy

__all__ = ("HetznerCloudProvider", "RetryPolicy", "hetzner_client")
