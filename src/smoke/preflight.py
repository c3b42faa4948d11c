"""Before the worker takes jobs: is the cloud account what smoke needs? (``smoke worker``, ``smoke up``, and
``smoke catalog check``, which runs the catalog part alone.)

A refused token or a missing SSH key stops the command with one line: every provision would fail. An entry of the
catalog that cannot be ordered is a warning line: the other entries still work, and the requests naming it will
fail with the cloud's reason. The agent firewall is put in shape here, so the first provision does not wait for it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from smoke.domain.catalog import CatalogSpec
from smoke.domain.errors import CloudError
from smoke.domain.services import AccountCheck, AgentFirewall
from smoke.settings import Settings

if TYPE_CHECKING:
    from dishka import AsyncContainer

__all__ = ("AccountRefused", "catalog_problems", "preflight")

logger = logging.getLogger("smoke.preflight")


@dataclass
class AccountRefused(Exception):
    """The cloud account cannot serve smoke at all; ``reason`` is one line."""

    reason: str

    def __str__(self) -> str:
        return self.reason


async def catalog_problems(container: AsyncContainer) -> list[str]:
    """What ``smoke catalog check`` prints: one line per catalog entry that cannot be ordered.

    Raises:
        AccountRefused: the cloud refused the token (or another request for good).
    """
    check = await container.get(AccountCheck)
    try:
        return await check.catalog_problems(await container.get(CatalogSpec))
    except CloudError as error:
        raise AccountRefused(error.reason) from None


async def preflight(container: AsyncContainer) -> None:
    """Check the account, warn about what cannot be ordered, and shape the agent firewall.

    Raises:
        AccountRefused: a refused token, or ``HETZNER_SSH_KEYS`` naming a key the project does not have.
    """
    for problem in await catalog_problems(container):
        logger.warning("catalog: %s", problem)
    settings = await container.get(Settings)
    try:
        missing = await (await container.get(AccountCheck)).missing_ssh_keys(settings.hetzner_ssh_keys)
        if missing:
            raise AccountRefused(f"HETZNER_SSH_KEYS: the project has no SSH key {', '.join(map(repr, missing))}")
        await (await container.get(AgentFirewall)).ensure()
    except CloudError as error:
        raise AccountRefused(error.reason) from None
