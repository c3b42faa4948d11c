"""The user data of an agent VPS: valid cloud-config, the reference agent installed and started, extras merged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml

import smoke.agent
from smoke.adapters.cloud_init import AGENT_CONFIG_PATH, AGENT_PATH, USER_DATA_LIMIT_BYTES, cloud_config
from smoke.simulators.agent.user_data import parse_agent_config
from tests.agent.support import file_content, written_files

UNIT_PATH = "/etc/systemd/system/smoke-agent.service"
REFERENCE_AGENT = Path(smoke.agent.__file__).with_name("reference.py")
LLM_CONFIG = {
    "instance_id": "0b8f3c1e-2f4a-4c59-9a43-6f1e2d3c4b5a",
    "agent_token": "Vq3x9kR2mT7wL0pZ4sN8bY1cF6hJ5dG0aE3uI7oK2qW",  # 43 characters, as secrets.token_urlsafe(32)
    "usage_url": "https://smoke.platform.example.com/internal/v1/agent/usage-events",
    "manifest_id": "agent-default",
    "llm": {
        "provider": "openai",
        "base_url": "https://llm.platform.example.com/v1",
        "model": "small-model-1",
        "api_key": "sk-proj-" + "x" * 156,  # as long as OpenAI's project keys
    },
}
ECHO_CONFIG = {key: value for key, value in LLM_CONFIG.items() if key != "llm"}


def render(
    agent: Literal["reference", "image"] = "reference",
    extra: str | None = None,
    config: dict[str, Any] = LLM_CONFIG,
    port: int = 8080,
) -> str:
    return cloud_config(agent_config=config, agent=agent, agent_port=port, extra_user_data=extra)


def test_the_reference_agent_is_written_byte_for_byte() -> None:
    agent = written_files(render())[AGENT_PATH]

    assert agent["encoding"] == "gz+b64"
    assert file_content(agent) == REFERENCE_AGENT.read_bytes()


def test_the_configuration_is_private_and_holds_what_the_agent_reads() -> None:
    config = written_files(render())[AGENT_CONFIG_PATH]

    assert config["permissions"] == "0600"
    assert json.loads(file_content(config)) == LLM_CONFIG


def test_a_systemd_unit_runs_the_agent_on_the_manifest_port_and_restarts_it_on_failure() -> None:
    unit = file_content(written_files(render(port=9090))[UNIT_PATH]).decode().splitlines()

    command = "/usr/bin/python3 -I /opt/smoke-agent/agent.py --config /etc/smoke-agent/config.json --port 9090"
    assert f"ExecStart={command}" in unit
    assert "Restart=on-failure" in unit
    assert "WantedBy=multi-user.target" in unit


def test_runcmd_starts_the_unit() -> None:
    runcmd = yaml.safe_load(render())["runcmd"]

    assert runcmd == [["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", "smoke-agent.service"]]


def test_an_image_manifest_gets_only_the_configuration() -> None:
    document = yaml.safe_load(render(agent="image", config=ECHO_CONFIG))

    assert [item["path"] for item in document["write_files"]] == [AGENT_CONFIG_PATH]
    assert "runcmd" not in document


def test_extra_user_data_is_merged_its_list_items_after_smokes() -> None:
    extra = "#cloud-config\npackages: [jq]\nruncmd: [echo extra]\nwrite_files:\n  - path: /etc/extra\n    content: x\n"

    document = yaml.safe_load(render(extra=extra))

    assert document["packages"] == ["jq"]
    assert document["runcmd"][-1] == "echo extra"
    assert document["runcmd"][:2] == yaml.safe_load(render())["runcmd"]
    paths = [item["path"] for item in document["write_files"]]
    assert paths == [AGENT_CONFIG_PATH, AGENT_PATH, UNIT_PATH, "/etc/extra"]


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ("#cloud-config\npackages: [jq\n", "not valid YAML"),
        ("#!/bin/sh\necho hello\n", "must start with #cloud-config"),
        ("#cloud-config\n- a list\n", "must be a mapping"),
        ("#cloud-config\nruncmd: echo not a list\n", "'runcmd' must be a list"),
    ],
)
def test_extra_user_data_that_does_not_fit_is_refused_in_one_line(extra: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as refused:
        render(extra=extra)

    assert "\n" not in str(refused.value)


def test_an_llm_manifest_stays_well_under_hetzners_limit() -> None:
    size = len(render().encode())

    assert size < USER_DATA_LIMIT_BYTES / 2, f"{size} bytes: little room left for a manifest's own user data"


def test_user_data_over_hetzners_limit_is_refused() -> None:
    extra = "#cloud-config\nwrite_files:\n  - path: /etc/big\n    content: " + "x" * USER_DATA_LIMIT_BYTES + "\n"

    with pytest.raises(ValueError, match="over Hetzner's limit"):
        render(extra=extra)


def test_the_same_instance_gets_the_same_user_data() -> None:
    assert render() == render()


@pytest.mark.parametrize(
    ("agent", "config", "extra"),
    [
        ("reference", ECHO_CONFIG, None),
        ("reference", LLM_CONFIG, "#cloud-config\npackages: [jq]\npackage_update: true\nruncmd:\n  - [touch, /x]\n"),
        ("image", ECHO_CONFIG, None),
    ],
)
def test_cloud_init_accepts_the_user_data(
    cloud_config_schema: Any, agent: Literal["reference", "image"], config: dict[str, Any], extra: str | None
) -> None:
    user_data = render(agent=agent, config=config, extra=extra)

    errors = [error.message for error in cloud_config_schema.iter_errors(yaml.safe_load(user_data))]

    assert user_data.startswith("#cloud-config\n")
    assert errors == []


def test_cloud_inits_schema_does_check_write_files(cloud_config_schema: Any) -> None:
    document = yaml.safe_load(render())
    document["write_files"][1]["encoding"] = "zip"

    assert not cloud_config_schema.is_valid(document)


def test_the_simulators_reader_finds_the_configuration() -> None:
    config = parse_agent_config(render(config=ECHO_CONFIG))

    assert config is not None
    assert (config.agent_token, config.usage_url) == (ECHO_CONFIG["agent_token"], ECHO_CONFIG["usage_url"])
