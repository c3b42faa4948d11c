"""The official Go CLI ``hcloud`` (Debian ``hcloud-cli``) against ``smoke simulate-cloud`` run as a process.

The CLI is configured by the environment only (``HCLOUD_TOKEN``, ``HCLOUD_ENDPOINT``, ``HCLOUD_CONFIG`` naming an
empty file of the test), never the home directory's configuration. It waits on every action it starts, polling
every 50 ms here. The texts it prints for a refusal are hcloud-go's ``<message> (<code>)``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.simulator.conftest import FAST, TOKEN, SimulatedCloud

pytestmark = [
    pytest.mark.skipif(
        shutil.which("hcloud") is None,
        reason="the Go CLI hcloud is not installed (Debian package hcloud-cli; .ci/run installs it when it can)",
    ),
    pytest.mark.slow,  # every test runs the CLI as processes, a second or two each
]

PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBhZVBDSoDVSS5xAEqmFfjht+MG422xi4KoA2yTn4muz ci@example"
Cli = Callable[..., subprocess.CompletedProcess[str]]


def cli_for(cloud: SimulatedCloud, config: Path, token: str = TOKEN) -> Cli:
    """Run ``hcloud <args>`` against ``cloud``; the completed process, whatever its exit code."""
    env = {
        "HCLOUD_TOKEN": token,
        "HCLOUD_ENDPOINT": cloud.api_url,
        "HCLOUD_CONFIG": str(config),
        "PATH": "/usr/bin:/bin",
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = ["hcloud", "--poll-interval", "50ms", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)

    return run


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "hcloud.toml"
    path.touch()
    return path


@pytest.fixture
def hcloud(cloud: SimulatedCloud, config: Path) -> Cli:
    return cli_for(cloud, config)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(ok(result))


def create_web_1(hcloud: Cli, *more: str) -> str:
    return ok(
        hcloud(
            "server", "create", "--name", "web-1", "--type", "cpx22", "--image", "ubuntu-24.04", "--location", "fsn1",
            *more,
        )
    )  # fmt: skip


def test_server_create_with_an_ssh_key_and_labels_waits_until_it_runs(hcloud: Cli) -> None:
    key_created = ok(hcloud("ssh-key", "create", "--name", "ci", "--public-key", PUBLIC_KEY))

    created = create_web_1(hcloud, "--ssh-key", "ci", "--label", "app=demo", "--label", "env=ci")
    [server] = as_json(hcloud("server", "list", "-l", "app=demo,env=ci", "-o", "json"))

    assert key_created.startswith("SSH key ")
    assert key_created.rstrip().endswith(" created")
    assert f"Server {server['id']} created" in created
    assert "IPv4: 203.0.113." in created
    assert "Root password" not in created
    assert (server["name"], server["status"], server["labels"]) == ("web-1", "running", {"app": "demo", "env": "ci"})


def test_server_create_without_ssh_keys_prints_the_root_password(hcloud: Cli) -> None:
    assert "Root password: " in create_web_1(hcloud)


def test_server_list_filters_by_label_selector(hcloud: Cli) -> None:
    create_web_1(hcloud, "--label", "app=demo")
    ok(hcloud("server", "create", "--name", "db-1", "--type", "cpx22", "--image", "ubuntu-24.04", "--label", "app=db"))

    assert [s["name"] for s in as_json(hcloud("server", "list", "-l", "app=demo", "-o", "json"))] == ["web-1"]
    assert [s["name"] for s in as_json(hcloud("server", "list", "-l", "app in (demo,db)", "-o", "json"))] == [
        "web-1",
        "db-1",
    ]
    assert as_json(hcloud("server", "list", "-l", "app=none", "-o", "json")) is None  # how hcloud-go prints no servers


def test_server_describe_by_name_and_by_id_and_add_label(hcloud: Cli) -> None:
    create_web_1(hcloud, "--label", "app=demo")
    by_name = as_json(hcloud("server", "describe", "web-1", "-o", "json"))

    label_added = ok(hcloud("server", "add-label", "web-1", "tier=gold"))
    by_id = as_json(hcloud("server", "describe", str(by_name["id"]), "-o", "json"))
    text = ok(hcloud("server", "describe", "web-1"))

    assert by_name["name"] == "web-1"
    assert by_id["id"] == by_name["id"]
    assert label_added.strip() == f"Label tier added to server {by_name['id']}"
    assert by_id["labels"] == {"app": "demo", "tier": "gold"}
    assert "Status:\t\trunning" in text
    assert by_id["server_type"]["name"] == "cpx22"
    assert by_id["image"]["name"] == "ubuntu-24.04"


def test_poweroff_poweron_and_reboot_wait_for_their_actions(hcloud: Cli) -> None:
    create_web_1(hcloud)

    def status() -> str:
        return str(as_json(hcloud("server", "describe", "web-1", "-o", "json"))["status"])

    stopped = ok(hcloud("server", "poweroff", "web-1"))
    status_after_poweroff = status()
    started = ok(hcloud("server", "poweron", "web-1"))
    status_after_poweron = status()
    rebooted = ok(hcloud("server", "reboot", "web-1"))

    assert ("stopped" in stopped, status_after_poweroff) == (True, "off")
    assert ("started" in started, status_after_poweron) == (True, "running")
    assert "rebooted" in rebooted
    assert status() == "running"


def test_server_type_location_and_image_are_described_by_id(hcloud: Cli) -> None:
    server_type = ok(hcloud("server-type", "describe", "109"))
    arm_type = ok(hcloud("server-type", "describe", "45"))
    location = ok(hcloud("location", "describe", "1"))
    image = as_json(hcloud("image", "describe", "161547270", "-o", "json"))

    assert "Name:\t\tcpx22" in server_type
    assert "Name:\t\tcax11" in arm_type
    assert "Name:\t\tfsn1" in location
    assert "Network Zone:\teu-central" in location
    assert (image["name"], image["type"]) == ("ubuntu-24.04", "system")


def test_server_delete_removes_it_once_its_action_ends(hcloud: Cli, cloud: SimulatedCloud) -> None:
    create_web_1(hcloud)

    deleted = ok(hcloud("server", "delete", "web-1"))  # this CLI version does not wait for delete_server
    status_at_once = [server["status"] for server in cloud.servers()]
    time.sleep(0.3)

    assert deleted.strip() == "Server web-1 deleted"
    assert status_at_once == ["deleting"]
    assert as_json(hcloud("server", "list", "-o", "json")) is None


def test_refusals_are_printed_as_message_and_code(hcloud: Cli, cloud: SimulatedCloud, config: Path) -> None:
    unknown_type = hcloud("server", "create", "--name", "web-1", "--type", "cx11", "--image", "ubuntu-24.04")
    bad_name = hcloud("server", "create", "--name", "bad_name", "--type", "cpx22", "--image", "ubuntu-24.04")
    cloud.set_faults(unavailable=[{"location": "fsn1", "server_type": "cpx22"}])
    sold_out = hcloud(
        "server", "create", "--name", "web-1", "--type", "cpx22", "--image", "ubuntu-24.04", "--location", "fsn1"
    )
    refused_token = cli_for(cloud, config, token="not-the-token")("server", "list")
    unknown_server = hcloud("server", "describe", "999999")

    assert (unknown_type.returncode, unknown_type.stderr.strip()) == (
        1,
        "hcloud: server type 'cx11' not found (invalid_input)",
    )
    assert bad_name.stderr.strip() == "hcloud: invalid input in field 'name' (invalid_input)"
    assert sold_out.stderr.strip() == "hcloud: error during placement (resource_unavailable)"
    assert refused_token.stderr.strip() == "hcloud: unable to authenticate (unauthorized)"
    assert unknown_server.stderr.strip() == "hcloud: server not found: 999999"


def test_the_server_limit_is_printed_as_resource_limit_exceeded(
    simulate_cloud: Callable[..., SimulatedCloud], config: Path
) -> None:
    hcloud = cli_for(simulate_cloud(*FAST, "--server-limit", "1"), config)
    create_web_1(hcloud)

    refused = hcloud("server", "create", "--name", "web-2", "--type", "cpx22", "--image", "ubuntu-24.04")

    assert (refused.returncode, refused.stderr.strip()) == (
        1,
        "hcloud: server limit exceeded (resource_limit_exceeded)",
    )
