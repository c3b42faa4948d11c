from __future__ import annotations

import uuid
from datetime import UTC, datetime

from smoke.domain.models import Instance, InstanceStatus, ProvisionRequest
from smoke.testing import FakeClock


def test_the_hostname_is_derived_from_the_instance_id() -> None:
    instance_id = uuid.UUID("497f6eca-6276-4993-bfeb-53cbbbba6f08")

    assert Instance.hostname_for(instance_id) == "smoke-497f6eca6276"


def test_the_fingerprint_ignores_the_key_and_sees_every_other_field() -> None:
    request = ProvisionRequest("a", "agent-default", "fsn1", "small")

    assert request.fingerprint() == ProvisionRequest("b", "agent-default", "fsn1", "small").fingerprint()
    assert request.fingerprint() != ProvisionRequest("a", "agent-default", "fsn1", "large").fingerprint()
    assert request.fingerprint() != ProvisionRequest("a", "agent-default", "nbg1", "small").fingerprint()


def test_soft_delete_suffixes_the_hostname_with_unix_seconds() -> None:
    now = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
    instance = Instance(
        id=uuid.uuid4(),
        customer_id=uuid.uuid4(),
        tenant_id=uuid.uuid4(),
        subscription_id=uuid.uuid4(),
        hostname="smoke-abc",
        status=InstanceStatus.RUNNING,
        manifest_id="agent-default",
        region_id="fsn1",
        tier_id="small",
        created_at=FakeClock().now(),
    )

    deleted = instance.soft_deleted(now)

    assert (deleted.hostname, deleted.status, deleted.deleted_at) == (
        f"smoke-abc-deleted-{int(now.timestamp())}",
        InstanceStatus.DELETING,
        now,
    )
