"""Timestamps as the Hetzner API writes them: RFC 3339, UTC, whole seconds (``2016-01-30T23:55:00Z``)."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ("rfc3339",)


def rfc3339(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
