"""The catalog: the manifests, regions and tiers a provision request may name, and what each stands for at Hetzner."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from smoke.domain.errors import UnknownCatalogEntry
from smoke.domain.models import Manifest, Placement

__all__ = ("SEEDED_CATALOG", "CatalogSpec")


@dataclass(frozen=True, slots=True)
class CatalogSpec:
    """A whole catalog, as configured: manifest id → manifest, region id → location, tier id → server type."""

    manifests: Mapping[str, Manifest] = field(default_factory=dict)
    regions: Mapping[str, str] = field(default_factory=dict)
    tiers: Mapping[str, str] = field(default_factory=dict)

    def placement(self, manifest_id: str, region_id: str, tier_id: str) -> Placement:
        """The three ids resolved. Raises ``UnknownCatalogEntry`` for the first unknown one."""
        for name, table, value in (
            ("manifest_id", self.manifests, manifest_id),
            ("region_id", self.regions, region_id),
            ("tier_id", self.tiers, tier_id),
        ):
            if value not in table:
                raise UnknownCatalogEntry(name, value)
        return Placement(self.manifests[manifest_id], region_id, tier_id, self.regions[region_id], self.tiers[tier_id])


SEEDED_CATALOG: Final = CatalogSpec(
    manifests={"agent-default": Manifest("agent-default", "ubuntu-24.04")},
    regions={name: name for name in ("fsn1", "nbg1", "hel1", "ash", "hil", "sin")},
    tiers={"small": "cpx22", "medium": "cpx32", "large": "cpx42"},
)
"""The catalog smoke is seeded with when ``SMOKE_CATALOG`` is unset (the reference agent on stock Ubuntu 24.04)."""
