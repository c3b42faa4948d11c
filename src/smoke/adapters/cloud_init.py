"""The cloud-init user data of an agent VPS: what the server writes and starts as it boots (docs/api.md).

Every server gets its agent configuration in ``/etc/smoke-agent/config.json``. A manifest with
``agent = "reference"`` also gets smoke's reference agent (``smoke/agent/reference.py``, byte for byte) and a
systemd unit that runs it, started from ``runcmd``; with ``agent = "image"`` the image brings its own agent.

cloud-init writes ``write_files`` early in boot and runs ``runcmd`` at its end, so the unit starts with every file
in place and needs no ``defer``.
"""

from __future__ import annotations

import base64
import functools
import gzip
import json
from collections.abc import Mapping
from importlib.resources import files
from typing import Any, Final, Literal

import yaml

__all__ = ("AGENT_CONFIG_PATH", "AGENT_PATH", "AGENT_UNIT", "USER_DATA_LIMIT_BYTES", "cloud_config")

AGENT_CONFIG_PATH: Final = "/etc/smoke-agent/config.json"
AGENT_PATH: Final = "/opt/smoke-agent/agent.py"
AGENT_UNIT: Final = "smoke-agent.service"
USER_DATA_LIMIT_BYTES: Final = 32 * 1024  # Hetzner refuses more
CLOUD_CONFIG_HEADER: Final = "#cloud-config"

_UNIT = """\
[Unit]
Description=smoke reference agent (chat and usage reports for smoke's CI)
Wants=network-online.target
After=network-online.target

[Service]
ExecStart=/usr/bin/python3 -I {agent} --config {config} --port {port}
Restart=on-failure
RestartSec=3
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes

[Install]
WantedBy=multi-user.target
"""


def cloud_config(
    *,
    agent_config: Mapping[str, object],
    agent: Literal["reference", "image"],
    agent_port: int,
    extra_user_data: str | None,
) -> str:
    """The ``#cloud-config`` user data of one agent VPS.

    Args:
        agent_config: what the agent reads from ``AGENT_CONFIG_PATH`` (the §4 keys, and ``llm`` with its key).
        agent: ``"reference"`` installs and starts smoke's reference agent; ``"image"`` writes only the config.
        agent_port: the port the reference agent listens on.
        extra_user_data: the manifest's own ``#cloud-config``: its keys are added to smoke's; a key both have
            must hold a list in both, and the manifest's items come after smoke's.

    Raises:
        ValueError: the extra user data is not a ``#cloud-config`` mapping that fits, or the whole is over
            Hetzner's ``USER_DATA_LIMIT_BYTES``. The message is one line.
    """
    document: dict[str, Any] = {"write_files": [_config_file(agent_config)]}
    if agent == "reference":
        if not 0 < agent_port < 65536:
            raise ValueError(f"agent port {agent_port} is not a TCP port")
        document["write_files"] += [_agent_file(), _unit_file(agent_port)]
        document["runcmd"] = [["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", AGENT_UNIT]]
    if extra_user_data is not None:
        document = _merged(document, _parsed_extra(extra_user_data))
    user_data = f"{CLOUD_CONFIG_HEADER}\n" + yaml.dump(document, Dumper=_Dumper, sort_keys=False)
    if (size := len(user_data.encode())) > USER_DATA_LIMIT_BYTES:
        raise ValueError(f"the user data is {size} bytes, over Hetzner's limit of {USER_DATA_LIMIT_BYTES}")
    return user_data


def _config_file(agent_config: Mapping[str, object]) -> dict[str, str]:
    """Mode 0600: it holds the agent token and the LLM key."""
    content = json.dumps(dict(agent_config), indent=2) + "\n"
    return {"path": AGENT_CONFIG_PATH, "permissions": "0600", "content": content}


def _agent_file() -> dict[str, str]:
    return {"path": AGENT_PATH, "permissions": "0644", "encoding": "gz+b64", "content": _compressed_agent()}


@functools.cache
def _compressed_agent() -> str:
    """The reference agent, gzipped and in base64 (under half its size), so that a manifest's extras have room."""
    source = files("smoke.agent").joinpath("reference.py").read_bytes()
    return base64.b64encode(gzip.compress(source, mtime=0)).decode()  # mtime 0: the same bytes on every render


def _unit_file(agent_port: int) -> dict[str, str]:
    content = _UNIT.format(agent=AGENT_PATH, config=AGENT_CONFIG_PATH, port=agent_port)
    return {"path": f"/etc/systemd/system/{AGENT_UNIT}", "permissions": "0644", "content": content}


def _parsed_extra(text: str) -> dict[str, Any]:
    if not text.lstrip().startswith(CLOUD_CONFIG_HEADER):
        raise ValueError(f"the extra user data must start with {CLOUD_CONFIG_HEADER}")
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ValueError(f"the extra user data is not valid YAML: {_one_line(error)}") from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ValueError("the extra user data must be a mapping of cloud-config keys")
    return document


def _merged(ours: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(ours)
    for key, value in extra.items():
        if key not in merged:
            merged[key] = value
        elif isinstance(merged[key], list) and isinstance(value, list):
            merged[key] = [*merged[key], *value]
        else:
            raise ValueError(f"the extra user data's {key!r} must be a list, to be appended to smoke's own")
    return merged


def _one_line(error: yaml.YAMLError) -> str:
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        return f"{error.problem} (line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(error).split())


_SafeDumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
"""libyaml's emitter when PyYAML has it (its wheels do): the same document, 0.18 against 5.8 ms a render here,
about a quarter of a provision's CPU in the worker before (docs/benchmarks.md, figure 3)."""


class _Dumper(_SafeDumper):  # type: ignore[valid-type,misc]
    """YAML that reads like the files it writes: multi-line strings as literal blocks (the unit and the
    configuration as on disk), lists of one-line strings on one line (``[systemctl, daemon-reload]``)."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


def _represent_list(dumper: yaml.SafeDumper, value: list[Any]) -> yaml.SequenceNode:
    one_line = all(isinstance(item, str) and "\n" not in item for item in value)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=one_line)


_Dumper.add_representer(str, _represent_str)
_Dumper.add_representer(list, _represent_list)
