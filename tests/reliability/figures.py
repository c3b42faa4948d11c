"""The figures of the reliability suite: each row records its counts, prints them, and the run shows them all.

Every test records one ``Row`` per scenario (test-plan row number, a title, and its figures: Jepsen-style counts
such as attempted / acknowledged / lost / duplicated / orphaned / recovered, and latencies where the row asks for
them). The conftest prints every recorded row in the terminal summary and stores them as JSON in the pytest cache
(``.pytest_cache/v/smoke/reliability``) and, when ``SMOKE_RELIABILITY_JSON`` names a file, there too.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ("RECORDED", "Row", "percentile", "record", "summary")


@dataclass(frozen=True, slots=True)
class Row:
    row: str
    """The test-plan row (``"4"``, ``"9"``, ``"db-restart"``)."""
    title: str
    figures: Mapping[str, Any]
    test: str = ""
    recorded_at: float = field(default_factory=time.time)

    def line(self) -> str:
        values = " ".join(f"{name}={_format(value)}" for name, value in self.figures.items())
        return f"[row {self.row}] {self.title}: {values}"


RECORDED: list[Row] = []


def record(row: str, title: str, test: str = "", **figures: Any) -> Row:
    """Record (and print) the figures of one scenario; the caller then asserts the ones that must be zero."""
    entry = Row(row, title, dict(figures), test)
    RECORDED.append(entry)
    print(entry.line())
    return entry


def percentile(values: Iterable[float], q: float) -> float:
    """The ``q``-th percentile (0..100, nearest rank) of ``values``; 0.0 for none."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summary() -> str:
    return json.dumps(
        [{"row": r.row, "title": r.title, "test": r.test, "figures": r.figures} for r in RECORDED],
        indent=2,
        default=str,
    )


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{_format(v)}" for k, v in value.items()) + "}"
    return str(value)
