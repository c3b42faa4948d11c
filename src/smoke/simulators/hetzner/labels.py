"""Hetzner label rules and label selectors.

Keys are ``[prefix/]name``: the name is at most 63 characters, alphanumeric at both ends with ``-``, ``_`` and
``.`` allowed in between; the prefix is a DNS subdomain of at most 253 characters, and ``hetzner.cloud/`` is
reserved. Values are empty or follow the name rule. A selector is a comma-separated AND of ``k=v``, ``k==v``,
``k!=v`` (also true when ``k`` is absent, as in Kubernetes), ``k``, ``!k``, ``k in (v1,v2)`` and
``k notin (v1,v2)``; commas inside parentheses do not split.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

__all__ = ("InvalidSelector", "LabelPredicate", "label_problem", "parse_selector")

LabelPredicate = Callable[[Mapping[str, str]], bool]

_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?"
_DNS_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_KEY_RE = re.compile(rf"^(?:(?P<prefix>{_DNS_LABEL}(?:\.{_DNS_LABEL})*)/)?{_NAME}$")
_VALUE_RE = re.compile(rf"^(?:{_NAME})?$")
_RESERVED_PREFIX = "hetzner.cloud"

_SET_TERM = re.compile(r"^(?P<key>[^\s!=(),]+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")
_COMPARISON_TERM = re.compile(r"^(?P<key>[^\s!=(),]+)\s*(?P<op>==|!=|=)\s*(?P<value>[^\s!=(),]*)$")
_EXISTENCE_TERM = re.compile(r"^(?P<negated>!?)\s*(?P<key>[^\s!=(),]+)$")


class InvalidSelector(ValueError):
    """The label selector cannot be parsed."""


def label_problem(key: str, value: str) -> str | None:
    """Why the label ``key=value`` is not allowed, or None when it is."""
    found = _KEY_RE.match(key)
    if found is None or len(found["prefix"] or "") > 253 or found["prefix"] == _RESERVED_PREFIX:
        return f"label key '{key}' is not correctly formatted"
    if _VALUE_RE.match(value) is None:
        return f"label value '{value}' (key: {key}) is not correctly formatted"
    return None


def parse_selector(selector: str) -> LabelPredicate:
    """A predicate over a resource's labels that is true when all terms of ``selector`` hold.

    Raises:
        InvalidSelector: a term is malformed.
    """
    predicates = [_parse_term(term.strip()) for term in _split_outside_parentheses(selector)]
    return lambda labels: all(predicate(labels) for predicate in predicates)


def _split_outside_parentheses(selector: str) -> list[str]:
    terms: list[str] = []
    current: list[str] = []
    depth = 0
    for char in selector:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth not in (0, 1):
            raise InvalidSelector(f"unbalanced parentheses in label selector '{selector}'")
        if char == "," and depth == 0:
            terms.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth:
        raise InvalidSelector(f"unbalanced parentheses in label selector '{selector}'")
    return [*terms, "".join(current)]


def _parse_term(term: str) -> LabelPredicate:
    if found := _SET_TERM.match(term):
        key, values = _checked_key(found["key"]), frozenset(v.strip() for v in found["values"].split(","))
        if found["op"] == "in":
            return lambda labels: key in labels and labels[key] in values
        return lambda labels: labels.get(key) not in values
    if found := _COMPARISON_TERM.match(term):
        key, value = _checked_key(found["key"]), found["value"]
        if found["op"] == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if found := _EXISTENCE_TERM.match(term):
        key, negated = _checked_key(found["key"]), bool(found["negated"])
        return lambda labels: (key in labels) != negated
    raise InvalidSelector(f"invalid label selector term '{term}'")


def _checked_key(key: str) -> str:
    if _KEY_RE.match(key) is None:
        raise InvalidSelector(f"invalid label key '{key}' in label selector")
    return key
