"""The reference agent as a server runs it: a real process started from the bytes the user data carries."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from smoke.adapters.agent import HttpAgentClient, agent_session
from smoke.serving import free_port
from tests.agent.support import (
    AGENT_TOKEN,
    API_KEY,
    LLM_MODEL,
    LLM_PROVIDER,
    FakeLlm,
    agent_config,
    chat,
    echo_agent,
    llm_agent,
    running_agent,
    usage_endpoint,
)

UNREACHABLE_USAGE_URL = f"http://127.0.0.1:{free_port()}/internal/v1/agent/usage-events"  # nothing listens there


def test_healthz_answers_200(agent_file: Path, tmp_path: Path) -> None:
    with echo_agent(agent_file, tmp_path) as (agent, _):
        response = httpx.get(f"{agent.url}/healthz")

    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_echo_streams_the_message_word_by_word_then_done_with_word_counts(agent_file: Path, tmp_path: Path) -> None:
    with echo_agent(agent_file, tmp_path) as (agent, _):
        events = list(chat(agent, "one two three"))

    assert [event.event for event in events] == ["delta", "delta", "delta", "done"]
    assert [event.id for event in events] == ["1", "2", "3", "4"]
    assert "".join(event.data["text"] for event in events[:-1]) == "one two three"
    assert events[-1].data == {"usage": {"provider": "echo", "model": "echo-1", "input_tokens": 3, "output_tokens": 3}}


async def test_smokes_own_agent_client_holds_a_turn_with_it(agent_file: Path, tmp_path: Path) -> None:
    with echo_agent(agent_file, tmp_path) as (agent, _):
        async with agent_session(connect=5, read=5) as session:
            client = HttpAgentClient(session)
            healthy = await client.is_healthy(agent.url)
            events = [event async for event in await client.open_chat(agent.url, AGENT_TOKEN, "via adapter")]

    assert healthy
    assert [(event.event, event.id) for event in events] == [("delta", "1"), ("delta", "2"), ("done", "3")]


def test_usage_is_posted_with_the_agent_token_before_done(agent_file: Path, tmp_path: Path) -> None:
    with echo_agent(agent_file, tmp_path) as (agent, endpoint):
        done = list(chat(agent, "hello agent"))[-1]

    (report,) = endpoint.reports
    assert report.authorization == f"Bearer {AGENT_TOKEN}"
    assert report.body == {"request_id": report.body["request_id"], **done.data["usage"]}
    assert report.at < done.at


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", f"Basic {AGENT_TOKEN}", f"Bearer {AGENT_TOKEN}x"])
def test_any_other_token_is_refused_with_401(agent_file: Path, tmp_path: Path, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    with echo_agent(agent_file, tmp_path) as (agent, endpoint):
        response = httpx.post(f"{agent.url}/v1/chat", json={"message": "hi"}, headers=headers)

    assert (response.status_code, response.json()) == (401, {"detail": "Not authenticated"})
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert endpoint.reports == []


@pytest.mark.slow
def test_usage_endpoint_down_is_an_error_event_in_bounded_time(agent_file: Path, tmp_path: Path) -> None:
    with running_agent(agent_file, agent_config(UNREACHABLE_USAGE_URL), tmp_path) as agent:
        started = time.monotonic()
        events = list(chat(agent, "anyone there"))

    assert [event.event for event in events] == ["delta", "delta", "error"]
    assert "usage report failed" in events[-1].data["detail"]
    assert time.monotonic() - started < 5


@pytest.mark.slow
def test_a_usage_5xx_is_retried_under_the_same_request_id(agent_file: Path, tmp_path: Path) -> None:
    with echo_agent(agent_file, tmp_path, 503) as (agent, endpoint):
        events = list(chat(agent, "try again"))

    assert events[-1].event == "done"
    assert [report.body["request_id"] for report in endpoint.reports] == [endpoint.reports[0].body["request_id"]] * 2


def test_a_refused_usage_report_is_final(agent_file: Path, tmp_path: Path) -> None:
    with echo_agent(agent_file, tmp_path, 401) as (agent, endpoint):
        events = list(chat(agent, "revoked"))

    assert (events[-1].event, events[-1].data) == ("error", {"detail": "usage report failed: HTTP 401"})
    assert len(endpoint.reports) == 1


def test_openai_deltas_are_relayed_as_they_arrive(agent_file: Path, tmp_path: Path) -> None:
    before_last = threading.Event()
    llm = FakeLlm(pieces=["Hel", "lo", " there"], before_last=before_last)
    with llm_agent(agent_file, tmp_path, llm) as (agent, _):
        events = chat(agent, "say hello")
        first = next(events)  # the LLM holds its last piece back until this has arrived
        before_last.set()
        rest = list(events)

    assert (first.event, first.data) == ("delta", {"text": "Hel"})
    assert [event.data.get("text") for event in rest] == ["lo", " there", None]


def test_openai_the_providers_token_counts_are_reported(agent_file: Path, tmp_path: Path) -> None:
    llm = FakeLlm(pieces=["Hi"], prompt_tokens=17, completion_tokens=5)
    with llm_agent(agent_file, tmp_path, llm) as (agent, usage):
        done = list(chat(agent, "count my tokens"))[-1]

    counts = {"provider": LLM_PROVIDER, "model": LLM_MODEL, "input_tokens": 17, "output_tokens": 5}
    assert (done.event, done.data) == ("done", {"usage": counts})
    assert usage.reports[0].body == {"request_id": usage.reports[0].body["request_id"], **counts}


def test_openai_is_asked_for_a_stream_with_usage_with_the_api_key(agent_file: Path, tmp_path: Path) -> None:
    llm = FakeLlm(pieces=["Hi"])
    with llm_agent(agent_file, tmp_path, llm) as (agent, _):
        list(chat(agent, "what do you send"))

    ((authorization, request),) = llm.requests
    assert authorization == f"Bearer {API_KEY}"
    assert request == {
        "model": LLM_MODEL,
        "messages": [{"role": "user", "content": "what do you send"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_openai_an_upstream_500_is_an_error_event_naming_the_status(agent_file: Path, tmp_path: Path) -> None:
    with llm_agent(agent_file, tmp_path, FakeLlm(pieces=[], status=500)) as (agent, usage):
        events = list(chat(agent, "are you there"))

    assert [event.event for event in events] == ["error"]
    assert "HTTP 500" in events[0].data["detail"]
    assert usage.reports == []


def test_the_log_has_a_line_per_turn_and_no_secret(agent_file: Path, tmp_path: Path) -> None:
    with llm_agent(agent_file, tmp_path, FakeLlm(pieces=["Hi"])) as (agent, _):
        list(chat(agent, "first"))
        list(chat(agent, "second"))
        log = agent.log()

    assert len([line for line in log.splitlines() if " turn " in line]) == 2, log
    assert AGENT_TOKEN not in log
    assert API_KEY not in log


def test_a_client_that_goes_away_mid_turn_leaves_the_agent_serving(agent_file: Path, tmp_path: Path) -> None:
    before_last = threading.Event()
    llm = FakeLlm(pieces=["one", " two"], before_last=before_last)
    with llm_agent(agent_file, tmp_path, llm) as (agent, _):
        events = chat(agent, "hang up on me")
        next(events)
        events.close()  # closes the connection mid-turn
        before_last.set()
        response = httpx.get(f"{agent.url}/healthz")
        log = agent.log()

    assert response.status_code == 200
    assert "Traceback" not in log


def _python_3_10() -> str | None:
    """A Python 3.10 interpreter (Ubuntu 22.04's), if this machine has one."""
    pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    candidates = [shutil.which("python3.10"), *map(str, sorted(pyenv.glob("versions/3.10.*/bin/python3.10")))]
    probe = "import sys; sys.exit(sys.version_info[:2] != (3, 10))"
    for candidate in filter(None, candidates):
        if subprocess.run([candidate, "-c", probe], capture_output=True, check=False).returncode == 0:
            return candidate
    return None


@pytest.mark.skipif(_python_3_10() is None, reason="no Python 3.10 here (Ubuntu 22.04's, that the agent must run on)")
def test_the_agent_runs_on_python_3_10(agent_file: Path, tmp_path: Path) -> None:
    python = _python_3_10()
    assert python is not None
    with (
        usage_endpoint() as (usage_url, usage),
        running_agent(agent_file, agent_config(usage_url), tmp_path, python) as agent,
    ):
        events = list(chat(agent, "old python"))

    assert [event.event for event in events] == ["delta", "delta", "done"]
    assert len(usage.reports) == 1


def test_smoke_agent_runs_the_packaged_agent(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(agent_config(UNREACHABLE_USAGE_URL)))
    port = free_port()
    command = [sys.executable, "-m", "smoke", "agent", "--config", str(config), "--host", "127.0.0.1"]
    with subprocess.Popen([*command, "--port", str(port)], stderr=subprocess.PIPE, text=True) as process:
        try:
            assert process.stderr is not None
            assert f"listening on http://127.0.0.1:{port}" in process.stderr.readline()
            assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        finally:
            process.terminate()


def test_a_bad_configuration_stops_the_agent_with_one_line_and_exit_2(agent_file: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    tokenless = {key: value for key, value in agent_config(UNREACHABLE_USAGE_URL).items() if key != "agent_token"}
    config.write_text(json.dumps(tokenless))
    command = [sys.executable, "-I", "-S", str(agent_file), "--config", str(config)]

    result = subprocess.run(command, capture_output=True, text=True, timeout=10)

    assert result.returncode == 2
    assert result.stderr == f'smoke-agent: bad configuration: {config}: "agent_token" must be a non-empty string\n'
