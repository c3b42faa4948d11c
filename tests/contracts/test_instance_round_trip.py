"""Any instance the domain can build is stored and read back unchanged, by the fake and by PostgreSQL.

The instances come from polyfactory: every field random within what the schema holds (hostnames up to 100
characters, any status, server ids up to 2^63, unicode failure reasons, timestamps to the microsecond).
"""

from __future__ import annotations

import dataclasses
import random
import string
import uuid
from datetime import UTC, datetime, timedelta

from polyfactory import Use
from polyfactory.factories import DataclassFactory

from smoke.domain.models import Instance, InstanceStatus
from tests.contracts.conftest import SCOPE, Stores

_PRINTABLE = string.ascii_letters + string.digits + " -_.:/'\"é漢🙂"
_rng = random.Random(20261201)


def _maybe(value: object) -> object:
    return _rng.choice([None, value])


def _moment(after_micros: int) -> datetime:
    return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(microseconds=after_micros + _rng.randint(0, 10**14))


class InstanceFactory(DataclassFactory[Instance]):
    __random__ = _rng
    __check_model__ = False

    customer_id = Use(lambda: SCOPE.customer_id)
    tenant_id = Use(lambda: SCOPE.tenant_id)
    subscription_id = Use(lambda: SCOPE.subscription_id)
    hostname = Use(lambda: "smoke-" + uuid.uuid4().hex + "x" * _rng.randint(0, 62))  # unique, 38 to 100 characters
    status = Use(lambda: _rng.choice([s for s in InstanceStatus if s is not InstanceStatus.QUEUED]))
    provider_server_id = Use(lambda: _maybe(_rng.randint(1, 2**63 - 1)))
    ipv4 = Use(lambda: _maybe(_rng.choice(["203.0.113.7", "2001:db8::1"])))
    failure_reason = Use(lambda: _maybe("".join(_rng.choices(_PRINTABLE, k=_rng.randint(1, 300)))))
    created_at = Use(lambda: _moment(0))
    deleted_at = Use(lambda: _maybe(_moment(10**14)))


async def test_any_instance_is_stored_and_read_back_unchanged(stores: Stores) -> None:
    for instance in InstanceFactory.batch(25):
        entry = await stores.accepted()
        instance = dataclasses.replace(
            instance,
            id=entry.instance_id,
            manifest_id=entry.manifest_id,
            region_id=entry.region_id,
            tier_id=entry.tier_id,
        )
        async with stores.database.begin() as uow:
            claimed = await uow.instances.claim(instance)
            await uow.commit()

        assert claimed == instance
        assert await stores.reader.instance(instance.id) == instance
