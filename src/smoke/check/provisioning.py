"""Smoke Provision as ``smoke check`` sends it: one idempotency key for every try, so that nothing is left behind.

A provision answered 5xx, or whose answer was lost (a timeout, a dropped connection), may have been recorded: the
check retries it with the same key, which is what the key is for (the API answers a replay with the first instance
and never creates a second). When it gives up, or is interrupted mid-request, the key may still stand for an
instance the check never heard of; ``resolve`` finds it so that the cleanup can delete it. Smoke Poll answers only
once the worker has inserted the instance's row, which a lagging worker or queue delays; a replay of the provision
answers the instance id of an accepted key at once. When the API never recorded the key, that replay records it,
and the cleanup deletes it straight away (Smoke Delete works on an instance still queued): either way nothing stays.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final
from uuid import UUID

from smoke.client import (
    AnswerLost,
    CannotConnect,
    ProvisionResponse,
    SmokeApiError,
    SmokeClient,
    SmokeClientError,
    UnexpectedResponse,
)

__all__ = ("MAX_ATTEMPTS", "KeyedProvision", "may_have_been_recorded")

MAX_ATTEMPTS: Final = 5
RETRY_DELAY_CAP: Final = 5.0

Failed = Callable[[int, SmokeClientError, float], None]
"""Told of each failed try: its number (1 for the first), the error, and the seconds until the next try."""


def may_have_been_recorded(error: SmokeClientError) -> bool:
    """Whether a provision that failed with ``error`` may all the same have been recorded by the API."""
    if isinstance(error, AnswerLost):
        return True
    return isinstance(error, SmokeApiError) and error.status >= 500 and not isinstance(error, UnexpectedResponse)


def _refused(error: SmokeClientError) -> bool:
    """The API answered, and refused: a 4xx says nothing was recorded under the key (a replay is never refused)."""
    return isinstance(error, SmokeApiError) and 400 <= error.status < 500


@dataclass(slots=True, kw_only=True)
class KeyedProvision:
    """The provision of one run, under its one key; ``outstanding`` while an instance may exist that it never saw."""

    idempotency_key: str
    manifest_id: str
    region_id: str
    tier_id: str
    retry_delay: float = 0.5
    """Seconds before the second try; doubled for each next one, up to ``RETRY_DELAY_CAP``."""
    outstanding: bool = False

    async def send(self, client: SmokeClient, failed: Failed) -> ProvisionResponse:
        """Provision; raise the last error after ``MAX_ATTEMPTS`` tries, or at once when a try settles the matter.

        It tries again exactly while the key may stand for an instance the check has not seen: after a 5xx or a lost
        answer, and after a refused connection once an earlier try may have reached the API (a restart). A first try
        that cannot connect is not retried: nothing was sent, the API is down, and the check says so at once.
        """
        for attempt in range(1, MAX_ATTEMPTS + 1):
            reached_before, self.outstanding = self.outstanding, True
            try:
                accepted = await self._once(client)
            except SmokeClientError as error:
                refused_connection = isinstance(error, CannotConnect)
                self.outstanding = may_have_been_recorded(error) or (refused_connection and reached_before)
                if attempt == MAX_ATTEMPTS or not self.outstanding:
                    raise
                delay = self._delay(attempt - 1)
                failed(attempt, error, delay)
                await asyncio.sleep(delay)
            else:
                self.outstanding = False
                return accepted
        raise AssertionError("unreachable: the last try returns or raises")

    async def resolve(self, client: SmokeClient, failed: Failed) -> UUID | None:
        """The instance the key stands for, or None when the API holds none and takes none now (a 4xx).

        Tries until it knows, however long the API stays unavailable: the caller's deadline bounds it.
        """
        attempt = 0
        while True:
            attempt += 1
            try:
                instance_id = await self._instance_of_key(client)
            except SmokeClientError as error:
                if not (may_have_been_recorded(error) or isinstance(error, CannotConnect)):
                    raise
                delay = self._delay(attempt - 1)
                failed(attempt, error, delay)
                await asyncio.sleep(delay)
            else:
                self.outstanding = False
                return instance_id

    async def _instance_of_key(self, client: SmokeClient) -> UUID | None:
        polled = await client.poll(self.idempotency_key)
        if polled.found:
            return polled.instance_id
        try:
            return (await self._once(client)).instance_id
        except SmokeClientError as error:
            if _refused(error):
                return None
            raise

    async def _once(self, client: SmokeClient) -> ProvisionResponse:
        return await client.provision(self.idempotency_key, self.manifest_id, self.region_id, self.tier_id)

    def _delay(self, retry: int) -> float:
        return float(min(RETRY_DELAY_CAP, self.retry_delay * 2**retry))
