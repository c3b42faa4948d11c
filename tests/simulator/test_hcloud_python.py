"""The official Python client ``hcloud`` against ``smoke simulate-cloud`` run as a process: it is the judge."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hcloud import APIException, Client
from hcloud.actions import BoundAction
from hcloud.firewalls import FirewallResource, FirewallResourceLabelSelector, FirewallRule
from hcloud.images import Image
from hcloud.locations import Location
from hcloud.server_types import ServerType, ServerTypeLocation
from hcloud.servers import BoundServer, CreateServerResponse, PublicNetworkFirewall, Server
from hcloud.ssh_keys import SSHKey

from tests.simulator.conftest import FAST, TOKEN, SimulatedCloud
from tests.typed import present

PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBhZVBDSoDVSS5xAEqmFfjht+MG422xi4KoA2yTn4muz ci@example"
FINGERPRINT = "27:8c:c4:87:d4:a4:fc:fa:0a:e6:8b:80:38:d2:ac:74"  # ssh-keygen -E md5 -lf of PUBLIC_KEY


@pytest.fixture
def hcloud(cloud: SimulatedCloud) -> Client:
    """The official client against the reset shared simulator, polling actions every 50 ms."""
    return Client(token=TOKEN, api_endpoint=cloud.api_url, poll_interval=0.05, timeout=10)


def create(client: Client, name: str, **options: Any) -> CreateServerResponse:
    options = {"server_type": ServerType(name="cpx22"), "image": Image(name="ubuntu-24.04"), **options}
    return client.servers.create(name=name, location=Location(name="fsn1"), **options)


def running(client: Client, name: str, **options: Any) -> BoundServer:
    """A server created with ``options`` once its create and start actions have finished."""
    created = create(client, name, **options)
    created.action.wait_until_finished()
    for action in created.next_actions:
        action.wait_until_finished()
    return client.servers.get_by_id(present(created.server.id))


def firewalls_of(server: Server) -> list[PublicNetworkFirewall]:
    """The firewalls ``public_net`` lists for ``server``."""
    return present(present(server.public_net).firewalls)


def locations_of(client: Client, server_type: str) -> list[ServerTypeLocation]:
    """Where the server type of that name is offered, as ``GET /server_types`` lists it."""
    return present(present(client.server_types.get_by_name(server_type)).locations)


def api_error(call: Callable[[], object]) -> APIException:
    with pytest.raises(APIException) as raised:
        call()
    return raised.value


# --- servers ----------------------------------------------------------------------------------------------------


def test_a_server_is_created_waited_for_read_and_deleted(hcloud: Client) -> None:
    created = create(hcloud, "web-1", labels={"app": "demo"})
    created.action.wait_until_finished()
    [start] = created.next_actions
    start.wait_until_finished()
    server = hcloud.servers.get_by_id(present(created.server.id))
    deletion = server.delete()
    deletion.wait_until_finished()

    assert (created.server.status, created.action.command, start.command) == (
        "initializing",
        "create_server",
        "start_server",
    )
    assert created.root_password
    assert server.status == "running"
    assert present(server.id) >= 10_000_000
    assert created.action.id >= 10_000_000
    assert present(present(server.public_net).ipv4).ip.startswith("203.0.113.")
    assert server.labels == {"app": "demo"}
    assert deletion.command == "delete_server"
    assert api_error(lambda: hcloud.servers.get_by_id(present(server.id))).code == "not_found"


def test_get_all_pages_past_fifty_and_get_list_returns_one_page(hcloud: Client) -> None:
    for n in range(55):
        create(hcloud, f"web-{n:02d}", labels={"batch": "big"}, start_after_create=False)

    everything = hcloud.servers.get_all(label_selector="batch=big")
    second_page = hcloud.servers.get_list(page=2, per_page=50)

    assert len(everything) == 55
    assert len({server.id for server in everything}) == 55
    assert len(second_page.servers) == 5
    pagination = present(second_page.meta.pagination)
    assert pagination.total_entries == 55
    assert (pagination.previous_page, pagination.next_page) == (1, None)


@pytest.mark.parametrize(
    ("selector", "names"),
    [
        ("env=prod", ["a-1"]),
        ("env==prod", ["a-1"]),
        ("env!=prod", ["b-1", "c-1"]),
        ("db", ["b-1"]),
        ("!db", ["a-1", "c-1"]),
        ("env in (prod,test)", ["a-1", "b-1"]),
        ("env notin (prod,test),!db", ["c-1"]),
        ("env in (prod,dev),tier=web", ["a-1"]),
    ],
)
def test_label_selectors_select_as_documented(hcloud: Client, selector: str, names: list[str]) -> None:
    for name, labels in [
        ("a-1", {"env": "prod", "tier": "web"}),
        ("b-1", {"env": "test", "db": ""}),
        ("c-1", {"env": "dev"}),
    ]:
        create(hcloud, name, labels=labels, start_after_create=False)

    assert [server.name for server in hcloud.servers.get_all(label_selector=selector)] == names


def test_put_renames_and_relabels_a_server(hcloud: Client) -> None:
    server = create(hcloud, "web-1", labels={"a": "1"}).server

    updated = hcloud.servers.update(server, name="web-2", labels={"b": "2"})

    assert (updated.name, updated.labels) == ("web-2", {"b": "2"})
    assert present(hcloud.servers.get_by_name("web-2")).id == server.id
    assert hcloud.servers.get_by_name("web-1") is None


@pytest.mark.slow
def test_power_actions_move_the_server_between_running_and_off(hcloud: Client) -> None:
    server = running(hcloud, "web-1")

    def after(action: BoundAction) -> tuple[str | None, str | None]:
        action.wait_until_finished()
        return action.command, hcloud.servers.get_by_id(present(server.id)).status

    assert after(server.power_off()) == ("stop_server", "off")
    assert after(server.power_on()) == ("start_server", "running")
    assert after(server.reboot()) == ("reboot_server", "running")
    assert after(server.reset()) == ("reset_server", "running")
    assert after(server.shutdown()) == ("shutdown_server", "off")


def test_actions_are_readable_through_the_client(hcloud: Client) -> None:
    created = create(hcloud, "web-1")
    created.action.wait_until_finished()

    by_id = hcloud.actions.get_by_id(created.action.id)
    of_server = created.server.get_actions_list(sort=["id:asc"])

    assert (by_id.command, by_id.status, by_id.progress) == ("create_server", "success", 100)
    assert [action.command for action in of_server.actions] == ["create_server", "start_server"]


def test_an_arm_server_type_gets_the_arm_image_of_the_same_name(hcloud: Client) -> None:
    server = create(hcloud, "arm-1", server_type=ServerType(name="cax11")).server
    images = hcloud.images.get_all(name="ubuntu-24.04")

    assert (present(server.server_type).architecture, present(server.image).architecture) == ("arm", "arm")
    assert sorted(present(image.architecture) for image in images) == ["arm", "x86"]
    assert [image.architecture for image in hcloud.images.get_all(architecture=["arm"])] == ["arm", "arm", "arm"]
    assert present(hcloud.images.get_by_name_and_architecture("ubuntu-24.04", "arm")).id == present(server.image).id


def test_the_catalogue_is_readable_by_id(hcloud: Client) -> None:
    assert hcloud.server_types.get_by_id(109).name == "cpx22"
    assert hcloud.locations.get_by_id(3).name == "hel1"
    assert hcloud.images.get_by_id(161547269).name == "ubuntu-24.04"
    assert [loc.location.name for loc in locations_of(hcloud, "cax11")] == ["fsn1", "nbg1", "hel1"]


# --- errors: each code as the client raises it ---------------------------------------------------------------------


def test_a_refused_token_raises_unauthorized(cloud: SimulatedCloud) -> None:
    client = Client(token="not-the-token", api_endpoint=cloud.api_url)

    error = api_error(client.servers.get_all)

    assert (error.code, error.message) == ("unauthorized", "unable to authenticate")


def test_an_invalid_name_raises_invalid_input_worded_as_the_api_does(hcloud: Client) -> None:
    error = api_error(lambda: create(hcloud, "not_a_hostname"))

    assert (error.code, error.message) == ("invalid_input", "invalid input in field 'name'")
    assert error.details == {"fields": [{"name": "name", "messages": ["Name must be a valid hostname."]}]}


def test_user_data_over_32_kib_raises_invalid_input(hcloud: Client) -> None:
    error = api_error(lambda: create(hcloud, "web-1", user_data="#cloud-config\n" + "x" * 32 * 1024))

    assert (error.code, error.message) == ("invalid_input", "invalid input in field 'user_data'")


def test_an_unknown_server_type_or_location_raises_invalid_input(hcloud: Client) -> None:
    unknown_type = api_error(lambda: create(hcloud, "web-1", server_type=ServerType(name="cx11")))
    wrong_place = api_error(
        lambda: hcloud.servers.create(
            name="web-1",
            server_type=ServerType(name="cx23"),
            image=Image(name="ubuntu-24.04"),
            location=Location(name="ash"),
        )
    )

    assert (unknown_type.code, unknown_type.message) == ("invalid_input", "server type 'cx11' not found")
    assert (wrong_place.code, wrong_place.message) == ("invalid_input", "unsupported location for server type")


def test_a_name_in_use_raises_uniqueness_error(hcloud: Client) -> None:
    create(hcloud, "web-1")

    error = api_error(lambda: create(hcloud, "web-1"))

    assert (error.code, error.details) == ("uniqueness_error", {"fields": [{"name": "name"}]})


def test_a_power_action_while_the_create_runs_raises_locked(hcloud: Client) -> None:
    server = create(hcloud, "web-1").server

    assert api_error(server.power_off).code == "locked"


def test_a_sold_out_type_raises_resource_unavailable(cloud: SimulatedCloud, hcloud: Client) -> None:
    cloud.set_faults(unavailable=[{"location": "fsn1", "server_type": "cpx22"}])

    error = api_error(lambda: create(hcloud, "web-1"))

    assert (error.code, error.message) == ("resource_unavailable", "error during placement")
    assert [loc.available for loc in locations_of(hcloud, "cpx22")][:2] == [False, True]


def test_placement_error_and_unavailable_are_raised_not_retried(cloud: SimulatedCloud, hcloud: Client) -> None:
    cloud.set_faults(placement_error_ratio=1)
    placement = api_error(lambda: create(hcloud, "web-1"))
    cloud.set_faults(placement_error_ratio=0, unavailable_ratio=1)
    unavailable = api_error(hcloud.servers.get_all)

    assert placement.code == "placement_error"
    assert unavailable.code == "unavailable"


def test_the_server_limit_raises_resource_limit_exceeded(simulate_cloud: Callable[..., SimulatedCloud]) -> None:
    cloud = simulate_cloud(*FAST, "--server-limit", "1")
    client = Client(token=TOKEN, api_endpoint=cloud.api_url)
    create(client, "web-1")

    error = api_error(lambda: create(client, "web-2"))

    assert (error.code, error.message) == ("resource_limit_exceeded", "server limit exceeded")
    assert error.details == {"limits": [{"name": "server_limit"}]}


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["rate_limit_ratio", "error_ratio", "gateway_error_ratio"])
def test_the_client_retries_429_conflict_bad_gateway_timeout_and_gateway_pages(
    cloud: SimulatedCloud, hcloud: Client, fault: str
) -> None:
    cloud.set_faults(**{fault: 0.3})

    server = running(hcloud, "web-1")
    listed = hcloud.servers.get_all()
    server.delete().wait_until_finished()

    assert [s.id for s in listed] == [server.id]
    assert cloud.servers() == []


def test_a_failed_action_raises_action_failed(cloud: SimulatedCloud, hcloud: Client) -> None:
    from hcloud.actions import ActionFailedException

    cloud.set_faults(action_error_ratio=1)
    created = create(hcloud, "web-1")

    with pytest.raises(ActionFailedException):
        created.action.wait_until_finished()
    assert hcloud.servers.get_by_id(present(created.server.id)).status == "off"


# --- ssh keys ----------------------------------------------------------------------------------------------------


def test_ssh_keys_are_created_found_updated_and_deleted(hcloud: Client) -> None:
    key = hcloud.ssh_keys.create(name="ci", public_key=PUBLIC_KEY, labels={"managed-by": "smoke"})

    by_name = hcloud.ssh_keys.get_by_name("ci")
    by_fingerprint = hcloud.ssh_keys.get_by_fingerprint(FINGERPRINT)
    by_label = hcloud.ssh_keys.get_all(label_selector="managed-by=smoke")
    updated = hcloud.ssh_keys.update(key, name="ci-2", labels={})
    hcloud.ssh_keys.delete(key)

    assert key.fingerprint == FINGERPRINT
    assert present(by_name).id == present(by_fingerprint).id == key.id
    assert [k.id for k in by_label] == [key.id]
    assert (updated.name, updated.labels) == ("ci-2", {})
    assert api_error(lambda: hcloud.ssh_keys.get_by_id(present(key.id))).code == "not_found"


def test_a_duplicate_or_malformed_key_is_refused(hcloud: Client) -> None:
    hcloud.ssh_keys.create(name="ci", public_key=PUBLIC_KEY)

    duplicate = api_error(lambda: hcloud.ssh_keys.create(name="other", public_key=PUBLIC_KEY))
    malformed = api_error(lambda: hcloud.ssh_keys.create(name="bad", public_key="ssh-foo AAAA"))

    assert (duplicate.code, duplicate.details) == ("uniqueness_error", {"fields": [{"name": "public_key"}]})
    assert (malformed.code, malformed.message) == ("invalid_input", "invalid input in field 'public_key'")


def test_a_server_created_with_ssh_keys_has_no_root_password(hcloud: Client) -> None:
    key = hcloud.ssh_keys.create(name="ci", public_key=PUBLIC_KEY)

    by_object = create(hcloud, "web-1", ssh_keys=[key])
    by_name = create(hcloud, "web-2", ssh_keys=[SSHKey(name="ci")])
    unknown = api_error(lambda: create(hcloud, "web-3", ssh_keys=[SSHKey(name="nobody")]))

    assert (by_object.root_password, by_name.root_password) == (None, None)
    assert (unknown.code, unknown.message) == ("invalid_input", "invalid input in field 'ssh_keys'")


# --- firewalls ---------------------------------------------------------------------------------------------------

AGENT_RULE = FirewallRule(direction="in", protocol="tcp", port="8080", source_ips=["203.0.113.0/24", "2001:db8::/32"])


def test_a_firewall_given_at_create_is_listed_on_the_server(hcloud: Client) -> None:
    labels = {"managed-by": "smoke"}  # hcloud annotates ``labels`` as ``str``; its docstring and the API say a dict
    firewall = hcloud.firewalls.create(name="agents", rules=[AGENT_RULE], labels=labels).firewall  # type: ignore[arg-type]

    created = create(hcloud, "web-1", firewalls=[firewall])
    created.action.wait_until_finished()
    server = hcloud.servers.get_by_id(present(created.server.id))
    found = hcloud.firewalls.get_all(label_selector="managed-by=smoke", name="agents")

    assert [(fw.firewall.id, fw.status) for fw in firewalls_of(created.server)] == [(firewall.id, "pending")]
    assert [(fw.firewall.id, fw.status) for fw in firewalls_of(server)] == [(firewall.id, "applied")]
    assert [fw.id for fw in found] == [firewall.id]
    assert present(found[0].rules)[0].source_ips == ["203.0.113.0/24", "2001:db8::/32"]
    assert [present(resource.server).id for resource in present(found[0].applied_to)] == [server.id]


@pytest.mark.slow
def test_firewall_rules_are_set_and_resources_applied_and_removed(hcloud: Client) -> None:
    server = running(hcloud, "web-1", labels={"role": "agent"})
    firewall = hcloud.firewalls.create(name="agents").firewall

    for action in hcloud.firewalls.set_rules(firewall, [AGENT_RULE]):
        action.wait_until_finished()
    for action in hcloud.firewalls.apply_to_resources(firewall, [FirewallResource(type="server", server=server)]):
        action.wait_until_finished()
    applied = firewalls_of(hcloud.servers.get_by_id(present(server.id)))
    in_use = api_error(lambda: hcloud.firewalls.delete(firewall))
    for action in hcloud.firewalls.remove_from_resources(firewall, [FirewallResource(type="server", server=server)]):
        action.wait_until_finished()
    removed = firewalls_of(hcloud.servers.get_by_id(present(server.id)))

    assert present(hcloud.firewalls.get_by_id(present(firewall.id)).rules)[0].port == "8080"
    assert [(fw.firewall.id, fw.status) for fw in applied] == [(firewall.id, "applied")]
    assert in_use.code == "resource_in_use"
    assert removed == []
    assert hcloud.firewalls.delete(firewall) is True


def test_a_firewall_applied_by_label_selector_covers_matching_servers(hcloud: Client) -> None:
    agent = create(hcloud, "agent-1", labels={"role": "agent"}, start_after_create=False).server
    create(hcloud, "db-1", labels={"role": "db"}, start_after_create=False)
    selector = FirewallResource(type="label_selector", label_selector=FirewallResourceLabelSelector("role=agent"))

    firewall = hcloud.firewalls.create(name="agents", rules=[AGENT_RULE], resources=[selector]).firewall
    reread = hcloud.firewalls.get_by_id(present(firewall.id))

    applied_to = present(present(reread.applied_to)[0].applied_to_resources)
    assert [present(resource.server).id for resource in applied_to] == [agent.id]
    assert [fw.status for fw in firewalls_of(present(hcloud.servers.get_by_name("agent-1")))] == ["applied"]
    assert firewalls_of(present(hcloud.servers.get_by_name("db-1"))) == []


def test_an_unknown_firewall_or_a_bad_rule_is_refused(hcloud: Client) -> None:
    from hcloud.firewalls import Firewall

    unknown = api_error(lambda: create(hcloud, "web-1", firewalls=[Firewall(id=999)]))
    bad_cidr = api_error(
        lambda: hcloud.firewalls.create(
            name="bad", rules=[FirewallRule(direction="in", protocol="tcp", port="80", source_ips=["10.0.0.1/8"])]
        )
    )

    assert (unknown.code, unknown.message) == ("invalid_input", "invalid input in field 'firewalls'")
    assert (bad_cidr.code, bad_cidr.message) == ("invalid_input", "invalid input in field 'rules'")
