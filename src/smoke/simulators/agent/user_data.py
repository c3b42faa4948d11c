"""Read the agent configuration out of a server's cloud-init user data, without a YAML library.

Accepted subset (anything else means "no configuration"):

- the document starts with the line ``#cloud-config``;
- a top-level ``write_files:`` key holds a block sequence (``- key: value`` items, indented or not);
- one item has ``path: /etc/smoke-agent/config.json`` and a ``content`` that is either a single-quoted
  scalar on one line (``content: '{"instance_id": ...}'``, a quote inside written ``''``), a plain scalar, or a
  literal block scalar (``content: |``, ``|-`` or ``|+``, followed by lines indented deeper than the key);
- the content is a JSON object with string ``instance_id``, ``agent_token``, ``usage_url`` and ``manifest_id``.

Comments, other keys and other ``write_files`` items are ignored. Flow style, double-quoted scalars, folded
scalars, anchors and ``encoding: b64`` are not supported.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

__all__ = ("CONFIG_PATH", "AgentConfig", "parse_agent_config")

CONFIG_PATH = "/etc/smoke-agent/config.json"

_ITEM_START = re.compile(r"^(?P<indent> *)- +(?P<rest>\S.*)$")
_KEY_VALUE = re.compile(r"^(?P<key>[A-Za-z_][\w-]*):(?: +(?P<value>.*))?$")
_BLOCK_INDICATOR = re.compile(r"^\|[-+]?$")


@dataclass(frozen=True, slots=True)
class AgentConfig:
    instance_id: str
    agent_token: str
    usage_url: str
    manifest_id: str


def parse_agent_config(user_data: str | None) -> AgentConfig | None:
    """The agent configuration written to :data:`CONFIG_PATH` by ``user_data``, or None if there is none."""
    lines = (user_data or "").splitlines()
    if not lines or lines[0].strip() != "#cloud-config":
        return None
    for item in _write_files_items(lines):
        if item.get("path") == CONFIG_PATH:
            return _config_from_json(item.get("content", ""))
    return None


def _write_files_items(lines: list[str]) -> list[dict[str, str]]:
    """The ``write_files`` items as flat key -> scalar mappings."""
    try:
        start = next(i for i, line in enumerate(lines) if line.rstrip() == "write_files:")
    except StopIteration:
        return []
    items: list[dict[str, str]] = []
    key_column = 0
    index = start + 1
    while index < len(lines):
        line = lines[index]
        if item_start := _ITEM_START.match(line):
            items.append({})
            key_column = item_start.start("rest")
        elif not line.strip() or line.lstrip().startswith("#") or (items and _indent(line) > key_column):
            index += 1
            continue
        elif not items or _indent(line) < key_column:
            break
        index = _read_entry(lines, index, line[key_column:], key_column, items[-1])
    return items


def _read_entry(lines: list[str], index: int, entry: str, key_column: int, item: dict[str, str]) -> int:
    """Store the ``key: value`` starting at ``lines[index]`` into ``item``; return the index of the next line."""
    found = _KEY_VALUE.match(entry.rstrip())
    if found is None:
        return index + 1
    value = (found["value"] or "").strip()
    if _BLOCK_INDICATOR.match(value):
        block, index = _block_scalar(lines, index + 1, key_column)
        item[found["key"]] = block
        return index
    item[found["key"]] = _scalar(value)
    return index + 1


def _block_scalar(lines: list[str], index: int, key_column: int) -> tuple[str, int]:
    """The literal block starting at ``lines[index]`` (lines indented deeper than ``key_column``)."""
    block: list[str] = []
    while index < len(lines) and (not lines[index].strip() or _indent(lines[index]) > key_column):
        block.append(lines[index])
        index += 1
    content_indent = min((_indent(line) for line in block if line.strip()), default=0)
    return "\n".join(line[content_indent:] for line in block), index


def _scalar(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1].replace("''", "'")
    return value.split(" #", 1)[0].strip()


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _config_from_json(content: str) -> AgentConfig | None:
    try:
        document = json.loads(content)
    except ValueError:
        return None
    fields = ("instance_id", "agent_token", "usage_url", "manifest_id")
    if not isinstance(document, dict) or not all(isinstance(document.get(name), str) for name in fields):
        return None
    return AgentConfig(**{name: document[name] for name in fields})
