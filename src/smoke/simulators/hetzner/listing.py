"""Sorting, filtering and pagination of Hetzner list endpoints.

``per_page`` defaults to 25 and is clamped to 50 (the API's maximum) rather than refused; ``page`` and
``per_page`` below 1 or not integers are 422 ``invalid_input``. A page past the end is empty.
``meta.pagination`` always carries its six keys, ``null`` where they do not apply. No ``Link`` header is sent.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from smoke.simulators.hetzner.errors import invalid_input

__all__ = ("DEFAULT_PER_PAGE", "MAX_PER_PAGE", "Query", "first", "paginate", "sorted_by", "statuses_filter")

DEFAULT_PER_PAGE = 25
MAX_PER_PAGE = 50

Query = Mapping[str, list[str]]
T = TypeVar("T")


def first(query: Query, name: str) -> str | None:
    """The first value of the query parameter ``name``, or None."""
    values = query.get(name)
    return values[0] if values else None


def sorted_by(items: Sequence[T], query: Query, keys: Mapping[str, Callable[[T], Any]]) -> list[T]:
    """``items`` (given in ID order) sorted by the repeatable ``sort=field[:asc|:desc]`` parameter."""
    result = list(items)
    for spec in reversed(query.get("sort", [])):
        field, _, direction = spec.partition(":")
        if field not in keys or direction not in ("", "asc", "desc"):
            raise invalid_input("sort", f"invalid sort '{spec}', allowed fields: {', '.join(keys)}")
        result.sort(key=keys[field], reverse=direction == "desc")
    return result


def statuses_filter(query: Query, allowed: frozenset[str]) -> frozenset[str] | None:
    """The statuses asked for with the repeatable ``status`` parameter, or None for all."""
    wanted = frozenset(query.get("status", []))
    if unknown := wanted - allowed:
        raise invalid_input("status", f"invalid status '{sorted(unknown)[0]}'")
    return wanted or None


def paginate(items: Sequence[T], query: Query) -> tuple[Sequence[T], dict[str, int | None]]:
    """The requested page of ``items`` and its ``meta.pagination`` object."""
    page = _positive_int(query, "page", 1)
    per_page = min(_positive_int(query, "per_page", DEFAULT_PER_PAGE), MAX_PER_PAGE)
    last_page = max(1, math.ceil(len(items) / per_page))
    meta = {
        "page": page,
        "per_page": per_page,
        "previous_page": page - 1 if page > 1 else None,
        "next_page": page + 1 if page < last_page else None,
        "last_page": last_page,
        "total_entries": len(items),
    }
    start = (page - 1) * per_page
    return items[start : start + per_page], meta


def _positive_int(query: Query, name: str, default: int) -> int:
    raw = query.get(name, [str(default)])[0]
    if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
        raise invalid_input(name, f"{name} must be a positive integer")
    return int(raw)
