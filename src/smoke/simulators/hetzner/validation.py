"""Reading request bodies and query filters the way the API does, with its errors.

A body that is not JSON is 400 ``json_error``; a field of the wrong type, or a missing required one, is 422
``invalid_input`` naming that field. Labels follow :mod:`.labels`; a malformed ``label_selector`` is 422.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TypeVar

import msgspec

from smoke.simulators.hetzner.errors import api_error, invalid_field
from smoke.simulators.hetzner.labels import InvalidSelector, label_problem, parse_selector
from smoke.simulators.hetzner.listing import Query, first

__all__ = ("check_labels", "decode_request", "label_filter")

T = TypeVar("T")

_ERROR_FIELD = re.compile(r"(?:field `|`\$\.)(?P<field>\w+)")


def decode_request(body: bytes, type_: type[T]) -> T:
    """``body`` decoded as ``type_``.

    Raises:
        HttpError: 400 ``json_error`` or 422 ``invalid_input`` (see the module docstring).
    """
    try:
        return msgspec.json.decode(body, type=type_)
    except msgspec.ValidationError as exc:
        found = _ERROR_FIELD.search(str(exc))
        raise invalid_field(found["field"] if found else "body", str(exc)) from exc
    except msgspec.DecodeError as exc:
        raise api_error(400, "json_error", f"invalid JSON in request: {exc}") from exc


def check_labels(labels: Mapping[str, str]) -> None:
    """Raise 422 ``invalid_input`` on ``labels`` for the first label the API would refuse."""
    for key, value in labels.items():
        if problem := label_problem(key, value):
            raise invalid_field("labels", problem)


def label_filter(query: Query) -> Callable[[Mapping[str, str]], bool]:
    """The ``label_selector`` of ``query`` as a predicate over labels; true for all when there is none."""
    if not (selector := first(query, "label_selector")):
        return lambda _labels: True
    try:
        return parse_selector(selector)
    except InvalidSelector as exc:
        raise invalid_field("label_selector", str(exc)) from exc
