"""Firewall rules as the API takes, refuses and shows them.

``direction`` ``in`` (with ``source_ips``) or ``out`` (with ``destination_ips``); ``protocol`` ``tcp``, ``udp``,
``icmp``, ``esp`` or ``gre``; ``port`` (``"80"`` or a range ``"1024-5000"``) for ``tcp`` and ``udp`` only; at most
100 CIDR blocks a rule, each a network with empty host bits or a single host (``10.0.1.1/32``), stored in canonical
form (``2001:0db8::/32`` becomes ``2001:db8::/32``); ``description`` at most 255 characters; at most 50 rules. A
rule the API would refuse is 422 ``invalid_input`` on ``rules``.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

import msgspec

from smoke.simulators.hetzner.errors import invalid_field

__all__ = ("Rule", "checked_rules")

MAX_RULES = 50
MAX_CIDRS_PER_RULE = 100
MAX_DESCRIPTION_LENGTH = 255
_PORT = re.compile(r"^(?P<low>[0-9]{1,5})(?:-(?P<high>[0-9]{1,5}))?$")


class Rule(msgspec.Struct):
    direction: Literal["in", "out"]
    protocol: Literal["tcp", "udp", "icmp", "esp", "gre"]
    port: str | None = None
    source_ips: list[str] = []
    destination_ips: list[str] = []
    description: str | None = None


def checked_rules(rules: list[Rule]) -> list[dict[str, object]]:
    """``rules`` as the API stores and shows them; 422 on ``rules`` for the first one it would refuse."""
    if len(rules) > MAX_RULES:
        raise invalid_field("rules", f"at most {MAX_RULES} rules are allowed")
    return [_checked_rule(rule) for rule in rules]


def _checked_rule(rule: Rule) -> dict[str, object]:
    ips, unused = (rule.source_ips, rule.destination_ips)
    if rule.direction == "out":
        ips, unused = unused, ips
    if unused or not ips:
        wanted = "source_ips" if rule.direction == "in" else "destination_ips"
        raise invalid_field("rules", f"a rule of direction {rule.direction} needs {wanted} and only those")
    if len(ips) > MAX_CIDRS_PER_RULE:
        raise invalid_field("rules", f"at most {MAX_CIDRS_PER_RULE} CIDR blocks are allowed per rule")
    if rule.protocol in ("tcp", "udp"):
        _check_port(rule.port)
    elif rule.port is not None:
        raise invalid_field("rules", f"port is only allowed for tcp and udp, not {rule.protocol}")
    if rule.description is not None and len(rule.description) > MAX_DESCRIPTION_LENGTH:
        raise invalid_field("rules", f"description is too long (at most {MAX_DESCRIPTION_LENGTH} characters)")
    canonical = [_canonical_cidr(ip) for ip in ips]
    return {
        "direction": rule.direction,
        "protocol": rule.protocol,
        "port": rule.port,
        "source_ips": canonical if rule.direction == "in" else [],
        "destination_ips": canonical if rule.direction == "out" else [],
        "description": rule.description,
    }


def _check_port(port: str | None) -> None:
    found = _PORT.match(port or "")
    low = int(found["low"]) if found else 0
    high = int(found["high"] or low) if found else 0
    if not 1 <= low <= high <= 65535:
        raise invalid_field("rules", f"port {port!r} is not a port (1-65535) or a range of them (1024-5000)")


def _canonical_cidr(cidr: str) -> str:
    try:
        if "/" not in cidr:
            raise ValueError("no prefix length")
        return str(ipaddress.ip_network(cidr, strict=True))
    except ValueError as exc:
        raise invalid_field("rules", f"{cidr!r} is not a CIDR block with empty host bits: {exc}") from exc
