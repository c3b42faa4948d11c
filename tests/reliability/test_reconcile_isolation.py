"""Reconcile must converge item by item: one server the cloud refuses to delete may not stop the rest of the pass.

``Reconciler.reconcile`` runs its steps (lost jobs and stale provisions, TTL expiry, cleanups, orphans) in one go and
lets the first error escape, so a single server that cannot be deleted (delete protection, ``locked``, a failing
delete action) aborts every later step of every pass: orphans after it and expired instances are never handled.
Run on the public fakes: the behaviour is the domain service's.
"""

from __future__ import annotations

import uuid

from smoke.bootstrap import make_container
from smoke.domain.errors import CloudError
from smoke.domain.models import CUSTOMER_LABEL, INSTANCE_ID_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE, ServerSpec
from smoke.domain.services import Reconciler
from smoke.settings import Settings
from smoke.testing.fakes import FakeCloudProvider
from smoke.testing.providers import FakeAdaptersProvider
from tests.reliability import figures


class _RefusingCloud(FakeCloudProvider):
    """Refuses to delete the servers in ``protected`` (as Hetzner does for a delete-protected server)."""

    def __init__(self) -> None:
        super().__init__()
        self.protected: set[int] = set()

    async def delete_server(self, server_id: int) -> bool:
        if server_id in self.protected:
            raise CloudError("protected", "the server is delete-protected")
        return await super().delete_server(server_id)


async def test_an_undeletable_orphan_does_not_keep_reconcile_from_deleting_the_others(row_test: str) -> None:
    fakes = FakeAdaptersProvider()
    cloud = fakes.cloud = _RefusingCloud()
    orphans = []
    for n in range(3):
        labels = {
            MANAGED_BY_LABEL: MANAGED_BY_VALUE,
            INSTANCE_ID_LABEL: str(uuid.uuid4()),
            CUSTOMER_LABEL: str(Settings().customer_id),
        }
        spec = ServerSpec(f"orphan-{n}", "cpx22", "ubuntu-24.04", "fsn1", labels, "#cloud-config\n")
        orphans.append(await cloud.create_server(spec))
    cloud.protected = {orphans[0].id}
    container = make_container(Settings(ops_bearer_token="t"), fakes)
    try:
        async with container() as scope:
            report = await (await scope.get(Reconciler)).reconcile()
    finally:
        await container.close()

    left = sorted(cloud.servers)
    figures.record("5", "reconcile with one undeletable orphan among 3", row_test, orphans=3, left=len(left))
    assert left == [orphans[0].id]
    assert (report.orphans_deleted, report.errors) == (2, 1)
