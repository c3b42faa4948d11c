from __future__ import annotations

import uuid

import pytest

from smoke.domain.errors import InstanceNotFound
from smoke.domain.models import Instance, InstanceStatus, PollResult
from smoke.domain.services import InstanceLookup, Provisioner
from smoke.testing.providers import FakeAdaptersProvider
from tests.unit.conftest import SCOPE, a_request


async def test_poll_is_not_found_until_the_instance_row_exists(
    lookup: InstanceLookup, provisioner: Provisioner, fakes: FakeAdaptersProvider
) -> None:
    receipt = await provisioner.submit(a_request())
    assert await lookup.poll("ci-run-1") == PollResult(found=False)
    entry = fakes.db.ledger[SCOPE.customer_id, "ci-run-1"]
    await fakes.instances.claim(Instance.new(entry, SCOPE, fakes.db.clock.now()))

    assert await lookup.poll("ci-run-1") == PollResult(True, receipt.instance_id, InstanceStatus.PROVISIONING)


async def test_poll_of_a_key_never_seen_is_not_found(lookup: InstanceLookup) -> None:
    assert await lookup.poll("never-seen") == PollResult(found=False)


async def test_status_of_an_unknown_instance_is_not_found(lookup: InstanceLookup) -> None:
    with pytest.raises(InstanceNotFound):
        await lookup.status(uuid.uuid4())
