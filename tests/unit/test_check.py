"""``smoke check``'s scenario against a scripted smoke API (``httpx.MockTransport``) and the real API on fakes."""

from __future__ import annotations

import asyncio
import io
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console

from smoke.api import create_app
from smoke.bootstrap import make_container
from smoke.check import STEPS, CheckOptions, CheckReport, ConsoleProgress, SmokeCheck, emit_report, junit_xml
from smoke.serving import free_port
from smoke.settings import Settings
from smoke.testing.providers import FakeAdaptersProvider
from tests.lifespan import running
from tests.typed import asgi_transport

INSTANCE = "7b0c2f0e-9d51-4f5e-a2a6-0d6f3b1c2a11"
TOKEN = "ops-token"
REPLY = ['event: delta\nid: 1\ndata: {"text": "hello"}\n\n', 'event: delta\nid: 2\ndata: {"text": " back"}\n\n']
DONE = 'event: done\nid: 3\ndata: {"usage": {"provider": "simulated", "model": "echo-1", "input_tokens": 2, "output_tokens": 2}}\n\n'  # noqa: E501


DROP = "drop"
"""In ``ScriptedApi.provision_failures``: the connection drops before the answer (the request was acted on)."""


@dataclass
class ScriptedApi:
    """A smoke API that answers from a script: the statuses it walks through, the chat stream, the usage count.

    ``provision_failures`` answer the first provision requests, in order (a status, or ``DROP``); the request is
    recorded all the same, as when the queue fails after the ledger's commit. ``unrecorded_answer`` is what a replay
    answers when nothing was recorded. Poll finds the instance once it is recorded and ``polls_before_found`` polls
    went by. ``reason`` is the reason of the instance's latest event.
    """

    statuses: list[str] = field(default_factory=lambda: ["provisioning", "running"])
    after_delete: list[str] = field(default_factory=lambda: ["deleting", "deleted"])
    polls_before_found: int = 1
    chat: list[str] = field(default_factory=lambda: [*REPLY, DONE])
    chat_refusal: tuple[int, str] | None = None
    llm_count: int = 1
    provision_failures: list[int | str] = field(default_factory=list)
    reason: str | None = None
    requests: list[str] = field(default_factory=list)
    provision_keys: list[str] = field(default_factory=list)
    recorded: bool = False
    deleted: bool = False

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/internal/v1/smoke")
        self.requests.append(f"{request.method} {path}")
        if path == "/provision":
            return self._provision(request)
        if path.startswith("/instances/by-key/"):
            found = self.recorded and self.requests.count(f"GET {path}") > self.polls_before_found
            return self._json({"found": found, "instance_id": INSTANCE if found else None, "status": None})
        if path.endswith("/chat"):
            if self.chat_refusal is not None:
                return httpx.Response(self.chat_refusal[0], json={"detail": self.chat_refusal[1]})
            return httpx.Response(200, headers={"Content-Type": "text/event-stream"}, content="".join(self.chat))
        if path.endswith("/llm-events"):
            return self._json(
                {"count": self.llm_count, "instance_id": INSTANCE, "providers": [], "window_seconds": 900}
            )
        if path.endswith("/events"):
            event = {"at": "2026-01-02T03:04:05Z", "status": "provisioning", "reason": self.reason}
            return self._json({"instance_id": INSTANCE, "events": [event]})
        if request.method == "DELETE":
            self.deleted = True
            return self._json({"instance_id": INSTANCE, "status": "deleting"})
        walk = self.after_delete if self.deleted else self.statuses
        status = walk.pop(0) if len(walk) > 1 else walk[0]
        return self._json({"hostname": "smoke-0123456789ab", "id": INSTANCE, "status": status})

    def _provision(self, request: httpx.Request) -> httpx.Response:
        self.provision_keys.append(json.loads(request.content)["idempotency_key"])
        self.recorded = True
        if not self.provision_failures:
            return self._json({"idempotency_key": "k", "instance_id": INSTANCE, "task_id": f"provision:{INSTANCE}"})
        answer = self.provision_failures.pop(0)
        if answer == DROP:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)
        return httpx.Response(int(answer), json={"detail": "Database or queue unavailable, retry later"})

    @staticmethod
    def _json(body: dict[str, Any]) -> httpx.Response:
        return httpx.Response(200, json=body)


def options(**changes: Any) -> CheckOptions:
    defaults: dict[str, Any] = {"base_url": "http://smoke.test", "token": TOKEN, "poll_interval": 0, "retry_delay": 0}
    return CheckOptions(**(defaults | changes))


async def check_against(api: ScriptedApi, **changes: Any) -> CheckReport:
    return await SmokeCheck(options(**changes), transport=httpx.MockTransport(api.handle)).run()


def statuses(report: CheckReport) -> dict[str, str]:
    return {step.name: step.status for step in report.steps}


@pytest.fixture
async def api_on_fakes() -> AsyncIterator[httpx.ASGITransport]:
    """The real API on the public fakes, called in-process: its real 401 and 422 bodies."""
    app = create_app(make_container(Settings(ops_bearer_token=TOKEN), FakeAdaptersProvider()))
    async with running(app):
        yield asgi_transport(app)


async def test_a_healthy_service_passes_every_step_and_exits_0() -> None:
    api = ScriptedApi()

    report = await check_against(api)

    assert report.exit_code == 0
    assert statuses(report) == dict.fromkeys(STEPS, "passed")
    assert report.instance_id == INSTANCE
    assert report.reply == "hello back"
    assert api.deleted


async def test_the_json_result_lists_every_step_with_status_seconds_and_message() -> None:
    document = (await check_against(ScriptedApi())).to_json()

    assert document["passed"] is True
    assert document["exit_code"] == 0
    assert document["instance_id"] == INSTANCE
    assert [step["name"] for step in document["steps"]] == list(STEPS)
    assert set(document["steps"][0]) == {"name", "status", "seconds", "message", "reason"}
    assert "2 deltas; usage simulated/echo-1" in document["steps"][3]["message"]
    json.dumps(document)


async def test_the_junit_xml_has_one_testcase_per_step_with_timings() -> None:
    report = await check_against(ScriptedApi())

    root = ET.fromstring(junit_xml(report))

    suite = root.find("testsuite")
    assert root.tag == "testsuites"
    assert suite is not None
    assert (suite.get("name"), suite.get("tests"), suite.get("failures")) == ("smoke check", "7", "0")
    cases = suite.findall("testcase")
    assert [case.get("name") for case in cases] == list(STEPS)
    assert {case.get("classname") for case in cases} == {"smoke.check"}
    assert all(float(case.get("time", "x")) >= 0 for case in cases)


async def test_the_junit_xml_carries_failures_and_skips_with_their_messages() -> None:
    report = await check_against(ScriptedApi(statuses=["provisioning", "failed"]))

    suite = ET.fromstring(junit_xml(report)).find("testsuite")

    assert suite is not None
    assert (suite.get("failures"), suite.get("skipped")) == ("1", "2")
    failure = suite.find("testcase[@name='wait-running']/failure")
    assert failure is not None
    assert "failed to provision" in failure.get("message", "")
    assert suite.find("testcase[@name='chat']/skipped") is not None


async def test_an_instance_that_fails_exits_1_with_the_reason_and_is_still_deleted() -> None:
    api = ScriptedApi(statuses=["provisioning", "failed"])

    report = await check_against(api)

    assert report.exit_code == 1
    assert statuses(report)["chat"] == "skipped"
    assert (statuses(report)["delete"], statuses(report)["wait-deleted"]) == ("passed", "passed")
    assert report.summary.startswith("smoke check failed at wait-running: the instance failed to provision")
    assert api.deleted


async def test_a_failed_chat_stream_fails_the_check_and_the_delete_step_still_runs() -> None:
    api = ScriptedApi(chat=[REPLY[0], 'event: error\ndata: {"detail": "agent lost"}\n\n'])

    report = await check_against(api)

    assert report.exit_code == 1
    assert report.step("chat").message == "the chat stream failed after 1 delta: agent lost"
    assert statuses(report)["llm-events"] == "skipped"
    assert "DELETE /instances/" + INSTANCE in api.requests


async def test_an_unmetered_turn_fails_the_llm_events_step() -> None:
    report = await check_against(ScriptedApi(llm_count=0))

    assert report.exit_code == 1
    assert report.step("llm-events").message.startswith("the chat turn was not metered")


async def test_a_timeout_names_the_step_and_the_last_status_seen() -> None:
    api = ScriptedApi(statuses=["provisioning"])

    report = await check_against(api, timeout=0.3, poll_interval=0.01)

    assert report.exit_code == 1
    assert re.fullmatch(
        r"wait-running timed out after \d+ s; last seen: status provisioning", report.step("wait-running").message
    )
    assert statuses(report)["wait-deleted"] == "passed"


async def test_a_server_left_behind_fails_the_check() -> None:
    report = await check_against(ScriptedApi(after_delete=["deleting"]), timeout=0.3, poll_interval=0.01)

    assert report.exit_code == 1
    assert report.step("wait-deleted").message.endswith("last seen: status deleting")


async def test_keep_leaves_the_instance_and_still_passes() -> None:
    api = ScriptedApi()

    report = await check_against(api, keep=True)

    assert report.exit_code == 0
    assert (statuses(report)["delete"], statuses(report)["wait-deleted"]) == ("skipped", "skipped")
    assert not api.deleted


async def test_a_cancelled_run_deletes_its_instance_then_reports_interrupted() -> None:
    api = ScriptedApi(statuses=["provisioning"])
    check = SmokeCheck(options(poll_interval=0.01), transport=httpx.MockTransport(api.handle))
    task = asyncio.create_task(check.run())
    while check.report.step("wait-running").status != "running":
        await asyncio.sleep(0.01)

    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
    assert api.deleted
    assert check.report.exit_code == 130
    assert check.report.summary == "smoke check interrupted during wait-running"


async def test_a_stopped_server_exits_1_with_one_line_and_nothing_to_delete() -> None:
    url = f"http://127.0.0.1:{free_port()}"

    report = await SmokeCheck(options(base_url=url)).run()

    assert report.exit_code == 1
    assert report.summary == f"smoke check failed at provision: cannot reach {url}: connection refused"
    assert statuses(report)["delete"] == "skipped"


async def test_a_wrong_token_exits_2(api_on_fakes: httpx.ASGITransport) -> None:
    report = await SmokeCheck(options(token="wrong"), transport=api_on_fakes).run()

    assert report.exit_code == 2
    assert report.summary == (
        "smoke check: the API refused the token (401 Not authenticated): check --token or OPS_BEARER_TOKEN"
    )


async def test_an_unknown_region_exits_2_with_the_apis_message(api_on_fakes: httpx.ASGITransport) -> None:
    report = await SmokeCheck(options(region_id="nowhere"), transport=api_on_fakes).run()

    assert report.exit_code == 2
    assert report.summary == (
        "smoke check: provision refused: Unknown region 'nowhere' (body.region_id); "
        "valid region_id: ash, fsn1, hel1, hil, nbg1, sin"
    )
    assert statuses(report)["delete"] == "skipped"


async def test_a_base_url_that_is_not_the_smoke_api_exits_2() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(404, json={"detail": "Not Found"}))

    report = await SmokeCheck(options(), transport=transport).run()

    assert report.exit_code == 2
    assert "does not answer like the smoke API" in report.summary
    assert report.summary.endswith("check --base-url")


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"base_url": "localhost:8000"}, "malformed base URL"),
        ({"token": ""}, "no token"),
        ({"timeout": 0}, "--timeout must be positive"),
        ({"message": "x" * 4001}, "--message must be 1..4000 characters"),
    ],
)
def test_bad_options_are_refused_before_anything_runs(change: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        options(**change)


async def test_progress_in_a_log_is_one_line_per_step_and_the_reply_as_it_comes() -> None:
    out = io.StringIO()
    progress = ConsoleProgress(Console(file=out, force_terminal=False, width=200))

    await SmokeCheck(options(), observer=progress, transport=httpx.MockTransport(ScriptedApi().handle)).run()

    lines = out.getvalue().splitlines()
    assert [line.split()[:2] for line in lines if not line.startswith(" ")] == [[s, "passed"] for s in STEPS]
    assert "  reply: hello back" in lines
    assert "  wait-running: status provisioning" in lines


async def test_progress_in_a_log_stays_silent_when_the_first_step_fails() -> None:
    out = io.StringIO()
    progress = ConsoleProgress(Console(file=out, force_terminal=False))

    await SmokeCheck(options(base_url=f"http://127.0.0.1:{free_port()}"), observer=progress).run()

    assert out.getvalue() == ""


async def test_emit_report_prints_the_json_writes_the_junit_file_and_returns_the_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = await check_against(ScriptedApi(statuses=["failed"]))
    console_out = io.StringIO()

    code = emit_report(report, console=Console(file=console_out), json_output=True, junit_path=tmp_path / "smoke.xml")

    assert code == 1
    assert json.loads(capsys.readouterr().out)["exit_code"] == 1
    assert ET.parse(tmp_path / "smoke.xml").getroot().tag == "testsuites"
    assert console_out.getvalue().strip() == report.summary


# --- why a step failed: the instance's last reason --------------------------------------------------------------

REFUSED = "Hetzner: unauthorized: unable to authenticate"


async def test_a_failed_instance_names_the_reason_of_its_last_event_in_one_line() -> None:
    report = await check_against(ScriptedApi(statuses=["failed"], reason="Hetzner: resource_unavailable: no cpx22"))

    step = report.step("wait-running")
    assert step.reason == "Hetzner: resource_unavailable: no cpx22"
    assert (
        step.message
        == "the instance failed to provision (status failed); reason: Hetzner: resource_unavailable: no cpx22"
    )
    assert report.summary == f"smoke check failed at wait-running: {step.message}"


async def test_the_reason_is_the_junit_failure_message() -> None:
    report = await check_against(ScriptedApi(statuses=["failed"], reason=REFUSED))

    failure = ET.fromstring(junit_xml(report)).find("testsuite/testcase[@name='wait-running']/failure")

    assert failure is not None
    assert REFUSED in failure.get("message", "")


async def test_a_timeout_names_what_the_instance_is_retrying() -> None:
    api = ScriptedApi(statuses=["provisioning"], reason="retrying: Hetzner: timeout: the action timed out")

    report = await check_against(api, timeout=0.3, poll_interval=0.01)

    assert report.step("wait-running").message.endswith(
        "last seen: status provisioning; retrying: Hetzner: timeout: the action timed out"
    )


async def test_a_refused_token_ends_the_waits_at_once_since_no_retry_can_help() -> None:
    api = ScriptedApi(
        statuses=["provisioning"], after_delete=["deleting"], reason=f"cleanup failed, retrying: {REFUSED}"
    )

    report = await check_against(api, timeout=60, poll_interval=0.01)

    assert report.seconds < 5
    assert report.step("wait-running").message == (
        "no wait can help: the cloud refuses the worker's HETZNER_API_TOKEN (status provisioning); "
        f"reason: cleanup failed, retrying: {REFUSED}"
    )
    assert report.step("wait-deleted").message.endswith(
        f"(status deleting); reason: cleanup failed, retrying: {REFUSED}"
    )


async def test_a_failure_for_a_refused_token_names_the_token() -> None:
    report = await check_against(ScriptedApi(statuses=["failed"], reason=REFUSED))

    assert report.step("wait-running").message == (
        f"the instance failed to provision (status failed); reason: {REFUSED}; "
        "the cloud refuses the worker's HETZNER_API_TOKEN"
    )


async def test_a_refused_chat_names_why_the_instance_is_not_running() -> None:
    api = ScriptedApi(chat_refusal=(409, "Instance is not running (failed)"), reason="server gone")

    report = await check_against(api)

    assert report.step("chat").message.endswith("answered 409: Instance is not running (failed); reason: server gone")


async def test_a_failure_without_a_reason_is_told_as_seen() -> None:
    report = await check_against(ScriptedApi(statuses=["failed"]))

    assert report.step("wait-running").message == "the instance failed to provision (status failed)"
    assert report.step("wait-running").reason is None


async def test_an_unknown_region_lists_the_regions_of_the_openapi_document() -> None:
    regions = ["ash", "fsn1", "hel1"]
    schema = {"properties": {"region_id": {"type": "string", "enum": regions}}}
    body = {"content": {"application/json": {"schema": schema}}}
    document = {"paths": {"/internal/v1/smoke/provision": {"post": {"requestBody": body}}}}
    refusal = {"detail": [{"loc": ["body", "region_id"], "msg": "Unknown region 'nowhere'", "type": "unknown"}]}

    def handle(request: httpx.Request) -> httpx.Response:
        return (
            httpx.Response(200, json=document)
            if request.url.path == "/schema/openapi.json"
            else httpx.Response(422, json=refusal)
        )

    report = await SmokeCheck(options(region_id="nowhere"), transport=httpx.MockTransport(handle)).run()

    assert report.exit_code == 2
    assert report.summary == (
        "smoke check: provision refused: Unknown region 'nowhere' (body.region_id); valid region_id: ash, fsn1, hel1"
    )


# --- provision: retried with the same key, and nothing left behind ----------------------------------------------


async def test_a_503_then_success_is_one_instance_under_one_key() -> None:
    api = ScriptedApi(provision_failures=[503])

    report = await check_against(api)

    assert report.exit_code == 0, report.summary
    assert len(api.provision_keys) == 2
    assert set(api.provision_keys) == {report.idempotency_key}


async def test_a_dropped_answer_is_retried_with_the_same_key() -> None:
    api = ScriptedApi(provision_failures=[DROP, 502])

    report = await check_against(api)

    assert report.exit_code == 0, report.summary
    assert api.provision_keys == [report.idempotency_key] * 3


async def test_a_provision_failing_every_try_gives_up_and_deletes_what_its_key_stands_for() -> None:
    api = ScriptedApi(provision_failures=[503] * 5)

    report = await check_against(api)

    assert report.exit_code == 1
    assert report.step("provision").message.startswith(
        "gave up after 5 tries: POST /internal/v1/smoke/provision answered 503"
    )
    assert report.step("delete").message.startswith(f"instance {INSTANCE}, found by its key")
    assert api.deleted
    assert statuses(report)["wait-deleted"] == "passed"


async def test_giving_up_while_the_api_stays_down_keeps_resolving_the_key_until_it_answers() -> None:
    api = ScriptedApi(provision_failures=[503] * 8, polls_before_found=99)

    report = await check_against(api)

    assert report.step("provision").status == "failed"
    assert len(api.provision_keys) == 9  # five tries, three replays answered 503, the fourth answered the instance
    assert api.deleted
    assert report.instance_id == INSTANCE


async def test_a_key_the_api_refuses_after_a_503_leaves_nothing_to_delete() -> None:
    api = ScriptedApi(provision_failures=[503, 409])

    report = await check_against(api)

    assert report.step("provision").message.endswith("answered 409: Database or queue unavailable, retry later")
    assert statuses(report)["delete"] == "skipped"
    assert not api.deleted


async def test_an_interrupted_provision_still_deletes_what_its_key_stands_for() -> None:
    api = ScriptedApi()
    provision_started = asyncio.Event()

    async def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/provision") and not provision_started.is_set():
            provision_started.set()
            api.recorded = True
            await asyncio.sleep(60)
        return api.handle(request)

    check = SmokeCheck(options(), transport=httpx.MockTransport(handle))
    task = asyncio.create_task(check.run())
    await provision_started.wait()

    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
    assert api.deleted
    assert check.report.summary == "smoke check interrupted during provision"
