"""The simulated cloud's state machines on a manual clock, in-process: what a real project shows at each moment."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from smoke.simulators import create_cloud_simulator
from smoke.simulators.hetzner.timing import ACTION_COMMANDS, Timing

TOKEN = "sim-token"
PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBhZVBDSoDVSS5xAEqmFfjht+MG422xi4KoA2yTn4muz ci@example"
RULE = {"direction": "in", "protocol": "tcp", "port": "8080", "source_ips": ["0.0.0.0/0"]}


class ManualClock:
    def __init__(self) -> None:
        self.now = 1_767_225_600.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def api(clock: ManualClock) -> AsyncIterator[httpx.AsyncClient]:
    """``/v1`` of a simulator whose actions take 1 s and boots 2 s, on the manual clock, with a server limit of 3."""
    app = create_cloud_simulator(action_seconds=1, boot_seconds=2, seed=3, clock=clock, server_limit=3)
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://sim/v1", headers=headers) as client:
        yield client


async def create(api: httpx.AsyncClient, name: str = "web-1", **fields: Any) -> dict[str, Any]:
    body = {"name": name, "server_type": "cpx22", "image": "ubuntu-24.04", "location": "fsn1", **fields}
    response = await api.post("/servers", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def server(api: httpx.AsyncClient, server_id: int) -> dict[str, Any]:
    found: dict[str, Any] = (await api.get(f"/servers/{server_id}")).json()["server"]
    return found


async def agent_up(api: httpx.AsyncClient, server_id: int) -> bool:
    return (await api.get(f"http://sim/agents/{server_id}/healthz")).status_code == 200


async def test_power_actions_lock_the_server_and_reboot_takes_the_agent_down_until_it_boots(
    api: httpx.AsyncClient, clock: ManualClock
) -> None:
    server_id = (await create(api))["server"]["id"]
    clock.advance(4)
    assert await agent_up(api, server_id)

    reboot = (await api.post(f"/servers/{server_id}/actions/reboot")).json()["action"]
    second = await api.post(f"/servers/{server_id}/actions/poweroff")
    agent_during_reboot = await agent_up(api, server_id)
    clock.advance(1)
    agent_just_after = await agent_up(api, server_id)
    clock.advance(2)

    assert (reboot["command"], reboot["status"]) == ("reboot_server", "running")
    assert second.status_code == 423
    assert (agent_during_reboot, agent_just_after) == (False, False)
    assert await agent_up(api, server_id)
    assert (await server(api, server_id))["status"] == "running"


async def test_poweroff_stops_then_offs_and_a_failed_one_leaves_it_running(
    api: httpx.AsyncClient, clock: ManualClock
) -> None:
    server_id = (await create(api))["server"]["id"]
    clock.advance(2)
    await api.post(f"/servers/{server_id}/actions/poweroff")
    stopping = (await server(api, server_id))["status"]
    clock.advance(1)
    off = (await server(api, server_id))["status"]
    await api.post(f"/servers/{server_id}/actions/poweron")
    clock.advance(1)
    await api.put("http://sim/_sim/faults", json={"hetzner": {"action_error_ratio": 1}})
    failed = (await api.post(f"/servers/{server_id}/actions/shutdown")).json()["action"]
    clock.advance(1)

    assert (stopping, off) == ("stopping", "off")
    assert (await api.get(f"/actions/{failed['id']}")).json()["action"]["status"] == "error"
    assert (await server(api, server_id))["status"] == "running"


async def test_a_deleting_server_still_counts_against_the_limit_and_a_retried_create_meets_uniqueness_first(
    api: httpx.AsyncClient, clock: ManualClock
) -> None:
    ids = [(await create(api, f"web-{n}"))["server"]["id"] for n in range(3)]
    await api.delete(f"/servers/{ids[0]}")

    while_deleting = await api.post("/servers", json={"name": "web-9", "server_type": "cpx22", "image": "ubuntu-24.04"})
    retried = await api.post("/servers", json={"name": "web-1", "server_type": "cpx22", "image": "ubuntu-24.04"})
    clock.advance(1)
    after = await api.post("/servers", json={"name": "web-9", "server_type": "cpx22", "image": "ubuntu-24.04"})

    assert (while_deleting.status_code, while_deleting.json()["error"]["code"]) == (403, "resource_limit_exceeded")
    assert (retried.status_code, retried.json()["error"]["code"]) == (409, "uniqueness_error")
    assert after.status_code == 201


async def test_ids_are_as_large_as_real_ones_and_never_reused_after_a_reset(api: httpx.AsyncClient) -> None:
    first = await create(api)
    await api.post("http://sim/_sim/reset")
    second = await create(api)

    assert first["server"]["id"] >= 100_000_000
    assert first["action"]["id"] > 2**31
    assert second["server"]["id"] > first["server"]["id"]
    assert second["action"]["id"] > first["next_actions"][0]["id"]


async def test_a_firewall_is_pending_on_the_server_until_its_apply_action_ends(
    api: httpx.AsyncClient, clock: ManualClock
) -> None:
    server_id = (await create(api))["server"]["id"]
    firewall_id = (await api.post("/firewalls", json={"name": "agents", "rules": [RULE]})).json()["firewall"]["id"]
    clock.advance(2)

    applied = await api.post(
        f"/firewalls/{firewall_id}/actions/apply_to_resources",
        json={"apply_to": [{"type": "server", "server": {"id": server_id}}]},
    )
    pending = (await server(api, server_id))["public_net"]["firewalls"]
    power_meanwhile = await api.post(f"/servers/{server_id}/actions/poweroff")
    clock.advance(1)

    [action] = applied.json()["actions"]
    assert action["command"] == "apply_firewall"
    assert action["resources"] == [{"id": server_id, "type": "server"}, {"id": firewall_id, "type": "firewall"}]
    assert pending == [{"id": firewall_id, "status": "pending"}]
    assert power_meanwhile.status_code == 423
    assert (await server(api, server_id))["public_net"]["firewalls"] == [{"id": firewall_id, "status": "applied"}]


async def test_set_rules_reapplies_and_label_selected_servers_cannot_be_removed_one_by_one(
    api: httpx.AsyncClient, clock: ManualClock
) -> None:
    server_id = (await create(api, labels={"role": "agent"}))["server"]["id"]
    selector = {"type": "label_selector", "label_selector": {"selector": "role=agent"}}
    firewall_id = (await api.post("/firewalls", json={"name": "agents", "apply_to": [selector]})).json()["firewall"][
        "id"
    ]

    set_rules = await api.post(f"/firewalls/{firewall_id}/actions/set_rules", json={"rules": [RULE]})
    remove_one = await api.post(
        f"/firewalls/{firewall_id}/actions/remove_from_resources",
        json={"remove_from": [{"type": "server", "server": {"id": server_id}}]},
    )
    delete_in_use = await api.delete(f"/firewalls/{firewall_id}")
    await api.post(f"/firewalls/{firewall_id}/actions/remove_from_resources", json={"remove_from": [selector]})
    clock.advance(1)
    deleted = await api.delete(f"/firewalls/{firewall_id}")

    assert [a["command"] for a in set_rules.json()["actions"]] == ["set_firewall_rules", "apply_firewall"]
    assert (remove_one.status_code, remove_one.json()["error"]["code"]) == (422, "firewall_managed_by_label_selector")
    assert (delete_in_use.status_code, delete_in_use.json()["error"]["code"]) == (422, "resource_in_use")
    assert (deleted.status_code, deleted.content, "content-type" in deleted.headers) == (204, b"", False)
    assert (await server(api, server_id))["public_net"]["firewalls"] == []


async def test_a_deleted_server_drops_out_of_its_firewalls(api: httpx.AsyncClient, clock: ManualClock) -> None:
    firewall_id = (await api.post("/firewalls", json={"name": "agents"})).json()["firewall"]["id"]
    server_id = (await create(api, firewalls=[{"firewall": firewall_id}]))["server"]["id"]
    await api.delete(f"/servers/{server_id}")
    clock.advance(1)

    firewall = (await api.get(f"/firewalls/{firewall_id}")).json()["firewall"]

    assert firewall["applied_to"] == []
    assert (await api.delete(f"/firewalls/{firewall_id}")).status_code == 204


@pytest.mark.parametrize(
    ("rule", "reason"),
    [
        ({"direction": "in", "protocol": "icmp", "port": "80", "source_ips": ["0.0.0.0/0"]}, "port is only allowed"),
        ({"direction": "in", "protocol": "tcp", "port": "80"}, "needs source_ips"),
        ({"direction": "out", "protocol": "tcp", "port": "80", "source_ips": ["0.0.0.0/0"]}, "needs destination_ips"),
        ({"direction": "in", "protocol": "tcp", "port": "0-80", "source_ips": ["0.0.0.0/0"]}, "is not a port"),
        ({"direction": "in", "protocol": "tcp", "port": "80", "source_ips": ["10.0.0.1"]}, "is not a CIDR block"),
        ({"direction": "in", "protocol": "tcp", "port": "80", "source_ips": ["0.0.0.0/0"] * 101}, "at most 100"),
    ],
)
async def test_firewall_rules_the_api_refuses_are_422_on_rules(
    api: httpx.AsyncClient, rule: dict[str, Any], reason: str
) -> None:
    response = await api.post("/firewalls", json={"name": "agents", "rules": [rule]})

    error = response.json()["error"]
    assert (response.status_code, error["code"], error["message"]) == (
        422,
        "invalid_input",
        "invalid input in field 'rules'",
    )
    assert reason in error["details"]["fields"][0]["messages"][0]


async def test_ipv6_cidrs_are_stored_in_canonical_form(api: httpx.AsyncClient) -> None:
    rule = {"direction": "in", "protocol": "tcp", "port": "80", "source_ips": ["2001:0db8:0000::/48"]}

    firewall = (await api.post("/firewalls", json={"name": "agents", "rules": [rule]})).json()["firewall"]

    assert firewall["rules"] == [
        {"direction": "in", "protocol": "tcp", "port": "80", "source_ips": ["2001:db8::/48"], "destination_ips": [],
         "description": None},
    ]  # fmt: skip


async def test_an_image_id_of_the_other_architecture_is_refused(api: httpx.AsyncClient) -> None:
    body = {"name": "arm-1", "server_type": "cax11", "image": 161547269, "location": "fsn1"}

    response = await api.post("/servers", json=body)

    assert (response.status_code, response.json()["error"]["details"]["fields"][0]["name"]) == (422, "image")


async def test_ssh_key_names_and_fingerprints_are_unique_and_delete_is_204(api: httpx.AsyncClient) -> None:
    key = (await api.post("/ssh_keys", json={"name": "ci", "public_key": PUBLIC_KEY})).json()["ssh_key"]

    same_name = await api.post("/ssh_keys", json={"name": "ci", "public_key": PUBLIC_KEY.replace("AAAAC3", "AAAAC4")})
    deleted = await api.delete(f"/ssh_keys/{key['id']}")

    assert key["fingerprint"] == "27:8c:c4:87:d4:a4:fc:fa:0a:e6:8b:80:38:d2:ac:74"
    assert (same_name.status_code, same_name.json()["error"]["code"]) == (409, "uniqueness_error")
    assert (deleted.status_code, deleted.content) == (204, b"")


def test_realistic_timing_draws_each_duration_within_its_range_and_overrides_fix_them() -> None:
    rng = random.Random(1)
    realistic = Timing.named("realistic")
    overridden = Timing.named("realistic", action_seconds=0.5, boot_seconds=3)

    creates = [realistic.action_seconds("create_server", rng) for _ in range(200)]
    boots = [realistic.boot.draw(rng) for _ in range(200)]
    deletes = [realistic.action_seconds("delete_server", rng) for _ in range(200)]

    assert 8 <= min(creates) < max(creates) <= 12
    assert 20 <= min(boots) < max(boots) <= 40
    assert 4 <= min(deletes) < max(deletes) <= 6
    assert {overridden.action_seconds(command, rng) for command in ACTION_COMMANDS} == {0.5}
    assert overridden.boot.draw(rng) == 3
