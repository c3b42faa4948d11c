from __future__ import annotations

import pytest
from dishka import AsyncContainer

from smoke.domain.catalog import SEEDED_CATALOG, CatalogSpec
from smoke.domain.errors import CloudError
from smoke.domain.models import Manifest, ServerTypeOffer
from smoke.domain.services import AccountCheck
from smoke.testing.providers import FakeAdaptersProvider


@pytest.fixture
async def check(container: AsyncContainer) -> AccountCheck:
    return await container.get(AccountCheck)


async def test_the_seeded_catalog_can_be_ordered_on_the_fake_cloud(check: AccountCheck) -> None:
    assert await check.catalog_problems(SEEDED_CATALOG) == []


async def test_each_entry_that_cannot_be_ordered_is_one_line(check: AccountCheck, fakes: FakeAdaptersProvider) -> None:
    fakes.cloud.server_types["cax11"] = ServerTypeOffer("cax11", "arm", frozenset({"fsn1"}))
    catalog = CatalogSpec(
        manifests={"custom": Manifest("custom", "my-snapshot")},
        regions={"eu": "fsn1", "us": "ash", "moon": "tycho"},
        tiers={"huge": "ccx99", "arm": "cax11"},
    )

    problems = await check.catalog_problems(catalog)

    assert problems == [
        "regions.moon: location 'tycho' does not exist",
        "tiers.huge: server type 'ccx99' does not exist",
        "tiers.arm in regions.us: server type 'cax11' cannot be ordered in 'ash' now",
        "manifests.custom: image 'my-snapshot' does not exist for arm server types",
    ]


async def test_a_refused_token_is_raised_not_listed(check: AccountCheck, fakes: FakeAdaptersProvider) -> None:
    fakes.cloud.fail_next("location_exists", CloudError("unauthorized", "unable to authenticate", provider="Hetzner"))

    with pytest.raises(CloudError, match="unable to authenticate"):
        await check.catalog_problems(SEEDED_CATALOG)


async def test_missing_ssh_keys_are_named(check: AccountCheck, fakes: FakeAdaptersProvider) -> None:
    fakes.cloud.ssh_keys = {"ci", "12345"}

    assert await check.missing_ssh_keys(["ci", "12345", "laptop"]) == ["laptop"]
