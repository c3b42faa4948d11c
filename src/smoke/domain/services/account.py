"""What the cloud account must offer before smoke provisions on it: the catalog orderable, the SSH keys present."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from smoke.domain.catalog import CatalogSpec
from smoke.domain.ports import CloudProvider

__all__ = ("AccountCheck",)


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountCheck:
    """Whether the cloud account can serve the catalog and the configured SSH keys (``smoke catalog check``)."""

    cloud: CloudProvider

    async def catalog_problems(self, catalog: CatalogSpec) -> list[str]:
        """One line per entry that cannot be ordered; empty when everything can be.

        An entry cannot be ordered when its location, server type or image is unknown, or when a server type is not
        sold in a region's location now.

        Raises:
            CloudError: the cloud refused the token (``unauthorized``...) or another request for good.
        """
        problems: list[str] = []
        locations = {}
        for region_id, location in catalog.regions.items():
            locations[region_id] = await self.cloud.location_exists(location)
            if not locations[region_id]:
                problems.append(f"regions.{region_id}: location {location!r} does not exist")
        architectures: set[str] = set()
        for tier_id, server_type in catalog.tiers.items():
            offer = await self.cloud.server_type(server_type)
            if offer is None:
                problems.append(f"tiers.{tier_id}: server type {server_type!r} does not exist")
                continue
            architectures.add(offer.architecture)
            for region_id, location in catalog.regions.items():
                if locations[region_id] and location not in offer.orderable_in:
                    where = f"tiers.{tier_id} in regions.{region_id}"
                    problems.append(f"{where}: server type {server_type!r} cannot be ordered in {location!r} now")
        for manifest_id, manifest in catalog.manifests.items():
            for architecture in sorted(architectures):
                if not await self.cloud.image_exists(manifest.image, architecture):
                    where = f"manifests.{manifest_id}"
                    problems.append(f"{where}: image {manifest.image!r} does not exist for {architecture} server types")
        return problems

    async def missing_ssh_keys(self, keys: Iterable[str]) -> list[str]:
        """The names or ids among ``keys`` the project has no SSH key for."""
        return [key for key in keys if not await self.cloud.ssh_key_exists(key)]
