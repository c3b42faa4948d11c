"""What the reference-agent tests run against: the agent as a real process, a usage endpoint, an OpenAI-compatible LLM.

The agent is started from the bytes the user data carries (decoded from a rendered cloud-config), under
``python -I -S``: isolated, and without even the interpreter's own site-packages, so an import outside the
standard library fails here as it would on a bare server. The fakes are standard-library HTTP servers on loopback,
each in a thread of the test process, recording what they were sent.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import subprocess
import sys
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml

from smoke.adapters.cloud_init import AGENT_PATH, cloud_config
from smoke.serving import free_port
from smoke.sse import SseEvent, SseParser

AGENT_TOKEN = "agent-token-0123456789"
API_KEY = "sk-test-key-9876543210"
LLM_PROVIDER = "openai"
LLM_MODEL = "small-model-1"


def agent_config(usage_url: str, llm_url: str | None = None) -> dict[str, Any]:
    """What smoke writes to ``/etc/smoke-agent/config.json``; with ``llm_url``, for an llm manifest."""
    config: dict[str, Any] = {
        "instance_id": "0b8f3c1e-2f4a-4c59-9a43-6f1e2d3c4b5a",
        "agent_token": AGENT_TOKEN,
        "usage_url": usage_url,
        "manifest_id": "agent-default",
    }
    if llm_url is not None:
        config["llm"] = {"provider": LLM_PROVIDER, "base_url": llm_url, "model": LLM_MODEL, "api_key": API_KEY}
    return config


def written_files(user_data: str) -> dict[str, dict[str, Any]]:
    """The ``write_files`` entries of a cloud-config, by path."""
    return {item["path"]: item for item in yaml.safe_load(user_data)["write_files"]}


def file_content(item: dict[str, Any]) -> bytes:
    """A ``write_files`` entry's bytes on disk, decoded as cloud-init decodes them."""
    if item.get("encoding") == "gz+b64":
        return gzip.decompress(base64.b64decode(item["content"]))
    assert "encoding" not in item, f"an encoding these tests do not decode: {item['encoding']}"
    return str(item["content"]).encode()


def shipped_agent(directory: Path) -> Path:
    """The reference agent as the user data carries it, written to ``directory``."""
    user_data = cloud_config(
        agent_config=agent_config("http://127.0.0.1:9/unused"), agent="reference", agent_port=8080, extra_user_data=None
    )
    path = directory / "agent.py"
    path.write_bytes(file_content(written_files(user_data)[AGENT_PATH]))
    return path


# --- the agent as a process ------------------------------------------------------------------------------------


@dataclass
class RunningAgent:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text()


@contextlib.contextmanager
def running_agent(
    agent: Path, config: dict[str, Any], directory: Path, python: str = sys.executable
) -> Iterator[RunningAgent]:
    """The agent on a loopback port, healthy; terminated on exit."""
    config_path = directory / "config.json"
    config_path.write_text(json.dumps(config))
    port = free_port()
    log_path = directory / "agent.log"
    command = [python, "-I", "-S", str(agent), "--config", str(config_path), "--host", "127.0.0.1", "--port", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stderr=log)
    running = RunningAgent(f"http://127.0.0.1:{port}", process, log_path)
    try:
        _wait_until_healthy(running)
        yield running
    finally:
        process.terminate()
        process.wait(timeout=5)


def _wait_until_healthy(agent: RunningAgent, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if agent.process.poll() is not None:
            raise AssertionError(f"the agent exited with {agent.process.returncode}: {agent.log()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{agent.url}/healthz", timeout=1).status_code == 200:
                return
        time.sleep(0.02)
    raise AssertionError(f"the agent did not answer /healthz within {timeout} s: {agent.log()}")


@dataclass
class ReceivedEvent:
    event: str
    data: dict[str, Any]
    id: str | None
    at: float


def chat(
    agent: RunningAgent, message: str, token: str = AGENT_TOKEN, timeout: float = 5.0
) -> Generator[ReceivedEvent, None, None]:
    """The turn's events as each arrives (``at``: ``time.monotonic()`` then); a read waits ``timeout`` at most."""
    headers = {"Authorization": f"Bearer {token}"}
    parser = SseParser()
    with httpx.stream("POST", f"{agent.url}/v1/chat", json={"message": message}, headers=headers, timeout=timeout) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"] == "text/event-stream"
        for chunk in r.iter_raw():
            for event in parser.feed(chunk):
                yield _received(event)


def _received(event: SseEvent) -> ReceivedEvent:
    return ReceivedEvent(event.event, json.loads(event.data), event.id, time.monotonic())


# --- fakes -----------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler], state: object) -> Iterator[str]:
    """``handler`` on a loopback port in a thread, with ``state`` as ``self.server.state``; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    server.state = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def _read_json(handler: BaseHTTPRequestHandler) -> Any:
    return json.loads(handler.rfile.read(int(handler.headers["Content-Length"])))


def _answer_json(handler: BaseHTTPRequestHandler, status: int, body: object) -> None:
    encoded = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(encoded)))
    handler.end_headers()
    handler.wfile.write(encoded)


@dataclass
class UsageReport:
    authorization: str | None
    body: dict[str, Any]
    at: float


@dataclass
class UsageEndpoint:
    """smoke's ``/internal/v1/agent/usage-events``: records each report, answers ``statuses`` in turn, then 200."""

    statuses: list[int] = field(default_factory=list)
    reports: list[UsageReport] = field(default_factory=list)


class _UsageHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        endpoint: UsageEndpoint = self.server.state  # type: ignore[attr-defined]
        report = UsageReport(self.headers.get("Authorization"), _read_json(self), time.monotonic())
        endpoint.reports.append(report)
        status = endpoint.statuses.pop(0) if endpoint.statuses else 200
        _answer_json(self, status, {"recorded": True} if status == 200 else {"detail": "refused by the test"})

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def usage_endpoint(*statuses: int) -> Iterator[tuple[str, UsageEndpoint]]:
    endpoint = UsageEndpoint(list(statuses))
    with serving(_UsageHandler, endpoint) as url:
        yield f"{url}/internal/v1/agent/usage-events", endpoint


@dataclass
class FakeLlm:
    """An OpenAI-compatible ``/chat/completions`` that streams ``pieces`` (HTTP/1.1, chunked, as OpenAI does).

    ``before_last`` (when set) is waited for before the last piece is sent: a test that receives the first delta
    before setting it proves the agent relays pieces as they arrive. ``status`` other than 200 refuses instead.
    """

    pieces: list[str]
    prompt_tokens: int = 7
    completion_tokens: int = 3
    status: int = 200
    before_last: threading.Event | None = None
    requests: list[tuple[str | None, dict[str, Any]]] = field(default_factory=list)


class _LlmHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        llm: FakeLlm = self.server.state  # type: ignore[attr-defined]
        llm.requests.append((self.headers.get("Authorization"), _read_json(self)))
        if self.path != "/v1/chat/completions" or llm.status != 200:
            _answer_json(self, llm.status, {"error": {"message": "the test's LLM is down", "type": "server_error"}})
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for number, piece in enumerate(llm.pieces, start=1):
            if number == len(llm.pieces) and llm.before_last is not None:
                llm.before_last.wait(timeout=10)
            self._event({"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}], "usage": None})
        usage = {"prompt_tokens": llm.prompt_tokens, "completion_tokens": llm.completion_tokens}
        self._event({"choices": [], "usage": {**usage, "total_tokens": llm.prompt_tokens + llm.completion_tokens}})
        self._chunk(b"data: [DONE]\n\n")
        self._chunk(b"")

    def _event(self, chunk: dict[str, Any]) -> None:
        self._chunk(f"data: {json.dumps({'object': 'chat.completion.chunk', **chunk})}\n\n".encode())

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def fake_llm(llm: FakeLlm) -> Iterator[str]:
    """Yields the ``base_url`` of ``llm`` (``.../v1``)."""
    with serving(_LlmHandler, llm) as url:
        yield f"{url}/v1"


@contextlib.contextmanager
def echo_agent(agent: Path, directory: Path, *usage_statuses: int) -> Iterator[tuple[RunningAgent, UsageEndpoint]]:
    """The agent without an ``llm`` block, reporting to a usage endpoint that answers ``usage_statuses`` first."""
    with (
        usage_endpoint(*usage_statuses) as (usage_url, endpoint),
        running_agent(agent, agent_config(usage_url), directory) as running,
    ):
        yield running, endpoint


@contextlib.contextmanager
def llm_agent(agent: Path, directory: Path, llm: FakeLlm) -> Iterator[tuple[RunningAgent, UsageEndpoint]]:
    """The agent with an ``llm`` block naming ``llm``, reporting to a usage endpoint that answers 200."""
    with (
        usage_endpoint() as (usage_url, endpoint),
        fake_llm(llm) as llm_url,
        running_agent(agent, agent_config(usage_url, llm_url), directory) as running,
    ):
        yield running, endpoint
