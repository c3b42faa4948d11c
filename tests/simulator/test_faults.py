"""Every fault of ``smoke simulate-cloud`` run as a process (uvloop), seen on the wire with httpx."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.simulator.conftest import FAST, TOKEN, SimulatedCloud

AGENT_TOKEN = "agent-secret-1"


def server_body(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "server_type": "cpx22", "image": "ubuntu-24.04", "location": "fsn1", **fields}


def api(cloud: SimulatedCloud) -> httpx.Client:
    return httpx.Client(base_url=cloud.api_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)


def error_of(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def test_a_dropped_create_answer_is_a_dropped_connection_and_the_server_exists(cloud: SimulatedCloud) -> None:
    cloud.set_faults(drop_create_response_ratio=1)

    with api(cloud) as client:
        for n in range(5):
            with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
                client.post("/servers", json=server_body(f"web-{n}"))

    assert sorted(server["name"] for server in cloud.servers()) == [f"web-{n}" for n in range(5)]


def test_a_stream_cut_mid_chat_is_a_dropped_connection(cloud: SimulatedCloud) -> None:
    config = {"instance_id": "i-1", "agent_token": AGENT_TOKEN, "usage_url": "http://127.0.0.1:9/u", "manifest_id": "m"}
    user_data = (
        f"#cloud-config\nwrite_files:\n- path: /etc/smoke-agent/config.json\n  content: '{json.dumps(config)}'\n"
    )
    with api(cloud) as client:
        server_id = client.post("/servers", json=server_body("agent-1", user_data=user_data)).json()["server"]["id"]
    agent = f"/agents/{server_id}"
    _until(lambda: cloud.control.get(f"{agent}/healthz").status_code == 200)
    cloud.control.put("/_sim/faults", json={"agent": {"fail_mid_stream_ratio": 1}}).raise_for_status()
    lines: list[str] = []

    with pytest.raises(httpx.RemoteProtocolError):  # noqa: PT012 - the lines that came before the cut count too
        headers = {"Authorization": f"Bearer {AGENT_TOKEN}"}
        with cloud.control.stream("POST", f"{agent}/v1/chat", json={"message": "a b c"}, headers=headers) as stream:
            lines.extend(stream.iter_lines())

    assert lines[:3] == ["event: delta", "id: 1", 'data: {"text": "a"}']


def test_a_gateway_error_is_a_load_balancers_html_page_without_api_headers(cloud: SimulatedCloud) -> None:
    cloud.set_faults(gateway_error_ratio=1)

    with api(cloud) as client:
        responses = [client.post("/servers", json=server_body(f"web-{n}")) for n in range(6)]

    assert {response.status_code for response in responses} <= {502, 504}
    assert all(response.headers["content-type"] == "text/html" for response in responses)
    assert all(response.text.startswith("<html>") for response in responses)
    assert not any(
        "X-Correlation-Id" in response.headers or "RateLimit-Limit" in response.headers for response in responses
    )
    assert cloud.servers() == []


def test_unavailable_ratio_answers_503_unavailable(cloud: SimulatedCloud) -> None:
    cloud.set_faults(unavailable_ratio=1)

    with api(cloud) as client:
        response = client.get("/servers")

    assert error_of(response) == (503, "unavailable")


def test_placement_error_ratio_refuses_the_create_with_422_placement_error(cloud: SimulatedCloud) -> None:
    cloud.set_faults(placement_error_ratio=1)

    with api(cloud) as client:
        response = client.post("/servers", json=server_body("web-1"))

    assert error_of(response) == (422, "placement_error")
    assert cloud.servers() == []


def test_a_sold_out_type_is_412_resource_unavailable_there_and_shown_unavailable(cloud: SimulatedCloud) -> None:
    cloud.set_faults(unavailable=[{"location": "fsn1", "server_type": "cpx22"}])

    with api(cloud) as client:
        refused = client.post("/servers", json=server_body("web-1"))
        elsewhere = client.post("/servers", json=server_body("web-2", location="nbg1"))
        cpx22 = client.get("/server_types", params={"name": "cpx22"}).json()["server_types"][0]

    assert refused.status_code == 412
    assert refused.json() == {
        "error": {"code": "resource_unavailable", "message": "error during placement", "details": None}
    }
    assert elsewhere.status_code == 201
    assert {loc["name"]: loc["available"] for loc in cpx22["locations"]} == {
        "fsn1": False, "nbg1": True, "hel1": True, "ash": True, "hil": True, "sin": True,
    }  # fmt: skip


def test_an_injected_429_says_what_an_empty_bucket_says(cloud: SimulatedCloud) -> None:
    cloud.set_faults(rate_limit_ratio=1)

    with api(cloud) as client:
        response = client.get("/servers")

    assert error_of(response) == (429, "rate_limit_exceeded")
    assert response.headers["RateLimit-Limit"] == "3600"
    assert response.headers["RateLimit-Remaining"] == "0"
    assert abs(int(response.headers["RateLimit-Reset"]) - (time.time() + 3600)) <= 2


def test_an_action_on_a_server_whose_create_runs_is_423_locked(cloud: SimulatedCloud) -> None:
    with api(cloud) as client:
        server_id = client.post("/servers", json=server_body("web-1")).json()["server"]["id"]
        response = client.post(f"/servers/{server_id}/actions/poweroff")

    assert response.status_code == 423
    assert response.json()["error"] == {
        "code": "locked", "message": "cannot perform operation because server is locked", "details": None,
    }  # fmt: skip


def test_get_faults_returns_the_current_settings_and_put_refuses_bad_knobs(cloud: SimulatedCloud) -> None:
    cloud.set_faults(gateway_error_ratio=0.25, unavailable=[{"location": "hel1", "server_type": "cax11"}])

    current = cloud.control.get("/_sim/faults").json()
    unknown_pair = cloud.control.put(
        "/_sim/faults", json={"hetzner": {"unavailable": [{"location": "xx1", "server_type": "cpx22"}]}}
    )
    out_of_range = cloud.control.put("/_sim/faults", json={"hetzner": {"placement_error_ratio": 1.5}})
    unknown_knob = cloud.control.put("/_sim/faults", json={"hetzner": {"server_limit": 3}})

    assert current["hetzner"]["gateway_error_ratio"] == 0.25
    assert current["hetzner"]["unavailable"] == [{"location": "hel1", "server_type": "cax11"}]
    assert current["hetzner"]["unavailable_ratio"] == 0.0
    assert {unknown_pair.status_code, out_of_range.status_code, unknown_knob.status_code} == {422}


def test_the_server_limit_refuses_past_n_servers_with_403_resource_limit_exceeded(
    simulate_cloud: Callable[..., SimulatedCloud],
) -> None:
    cloud = simulate_cloud(*FAST, "--server-limit", "2")

    with api(cloud) as client:
        created = [client.post("/servers", json=server_body(f"web-{n}")) for n in range(2)]
        refused = client.post("/servers", json=server_body("web-2"))
        client.delete(f"/servers/{created[0].json()['server']['id']}")
        _until(lambda: len(cloud.servers()) == 1)
        after_delete = client.post("/servers", json=server_body("web-2"))

    assert refused.status_code == 403
    assert refused.json()["error"] == {
        "code": "resource_limit_exceeded",
        "message": "server limit exceeded",
        "details": {"limits": [{"name": "server_limit"}]},
    }
    assert after_delete.status_code == 201


def test_the_rate_limit_bucket_holds_n_requests(simulate_cloud: Callable[..., SimulatedCloud]) -> None:
    cloud = simulate_cloud(*FAST, "--rate-limit", "5")

    with api(cloud) as client:
        answers = [client.get("/servers") for _ in range(6)]

    assert [answer.status_code for answer in answers] == [200, 200, 200, 200, 200, 429]
    assert [answer.headers["RateLimit-Remaining"] for answer in answers] == ["4", "3", "2", "1", "0", "0"]
    assert answers[-1].headers["RateLimit-Limit"] == "5"
    assert abs(int(answers[-1].headers["RateLimit-Reset"]) - (time.time() + 3600)) <= 2


@pytest.mark.slow
def test_realistic_timing_creates_in_about_ten_seconds_and_boots_in_twenty_to_forty(
    simulate_cloud: Callable[..., SimulatedCloud],
) -> None:
    cloud = simulate_cloud("--timing", "realistic")

    with api(cloud) as client:
        started = time.monotonic()
        server_id = client.post("/servers", json=server_body("web-1")).json()["server"]["id"]

        def status() -> object:
            return client.get(f"/servers/{server_id}").json()["server"]["status"]

        _until(lambda: status() == "running", timeout=20, interval=0.25)
        running_after = time.monotonic() - started
        agent_down_at_running = cloud.control.get(f"/agents/{server_id}/healthz").status_code
        _until(lambda: cloud.control.get(f"/agents/{server_id}/healthz").status_code == 200, timeout=45, interval=0.5)
        booted_after = time.monotonic() - started - running_after
        client.delete(f"/servers/{server_id}")
        deleting_at = time.monotonic()
        _until(lambda: client.get(f"/servers/{server_id}").status_code == 404, timeout=10, interval=0.25)
        deleted_after = time.monotonic() - deleting_at

    assert 9 <= running_after <= 15
    assert agent_down_at_running == 503
    assert 19 <= booted_after <= 41
    assert 3.5 <= deleted_after <= 7


def _until(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(interval)
