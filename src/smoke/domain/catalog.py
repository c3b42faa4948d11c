"""The catalog smoke is seeded with (SPEC §7): request ids and the Hetzner names they stand for."""

from __future__ import annotations

from typing import Final

__all__ = ("SEEDED_MANIFESTS", "SEEDED_REGIONS", "SEEDED_TIERS")

SEEDED_REGIONS: Final = {name: name for name in ("fsn1", "nbg1", "hel1", "ash", "hil", "sin")}
"""Region id → Hetzner location."""

SEEDED_TIERS: Final = {"small": "cpx22", "medium": "cpx32", "large": "cpx42"}
"""Tier id → Hetzner server type."""

SEEDED_MANIFESTS: Final = {"agent-default": "ubuntu-24.04"}
"""Manifest id → Hetzner image."""
