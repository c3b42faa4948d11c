"""smoke's reference agent: the chat server a stock Ubuntu VPS runs so that smoke's CI can talk to it.

smoke provisions a server, waits until it answers ``GET /healthz``, holds one chat turn with it on
``POST /v1/chat`` and checks that the turn's LLM usage was metered. This file is everything the server needs for
that: one Python file, standard library only, for Python 3.10 or newer (Ubuntu 22.04 and 24.04 ship it).

How it is started
    The server's cloud-init user data writes this file to ``/opt/smoke-agent/agent.py``, its configuration to
    ``/etc/smoke-agent/config.json`` and the systemd unit ``smoke-agent.service``, which runs::

        /usr/bin/python3 -I /opt/smoke-agent/agent.py --config /etc/smoke-agent/config.json --port 8080

    On a laptop, ``smoke agent --config config.json`` runs the same file. Logs: ``journalctl -u smoke-agent``.

Configuration (JSON, written by smoke for each server)::

    {"instance_id": "…", "agent_token": "…", "manifest_id": "agent-default",
     "usage_url": "https://smoke.example.com/internal/v1/agent/usage-events",
     "llm": {"provider": "openai", "base_url": "https://llm.example.com/v1", "model": "small-model-1",
             "api_key": "…"}}

    Without ``llm`` the agent echoes the message back word by word (provider ``echo``, model ``echo-1``, one token
    per word). With it, the reply is streamed from the OpenAI-compatible ``{base_url}/chat/completions`` and the
    provider's own token counts are reported under the configured provider and model names.

What it answers
    ``GET /healthz``
        200 ``{"status": "ok"}``.
    ``POST /v1/chat`` with ``Authorization: Bearer <agent_token>`` and ``{"message": "…"}``
        ``text/event-stream``: ``event: delta`` / ``data: {"text": "…"}`` for each piece of the reply as it comes,
        then ``event: done`` / ``data: {"usage": {"provider", "model", "input_tokens", "output_tokens"}}``. Before
        ``done`` the turn's usage has been posted to ``usage_url`` with the agent token and answered 2xx. If that
        report or the LLM fails, the stream ends with ``event: error`` / ``data: {"detail": "…"}`` instead.
        Any other token is 401.

Each response closes its connection (HTTP/1.0), so a stream needs no chunked framing: it ends when the turn does.
Every network call is bounded by a timeout. One line per turn goes to stderr; the token and the API key never do.
"""

from __future__ import annotations

import argparse
import hmac
import http.client
import json
import sys
import time
import uuid
from collections.abc import Generator, Iterator
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BufferedIOBase
from typing import Any, Protocol, TypeGuard
from urllib.parse import urlsplit

USAGE_ATTEMPTS = 3
USAGE_BACKOFF_SECONDS = 0.5  # before the second attempt; doubled before each one after it
USAGE_TIMEOUT_SECONDS = 5.0
LLM_TIMEOUT_SECONDS = 60.0  # per read: how long the LLM may stay silent, before its first token or between two
CLIENT_TIMEOUT_SECONDS = 30.0  # a client that neither sends nor reads for this long is dropped
MAX_BODY_BYTES = 64 * 1024
EXIT_BAD_CONFIG = 2


# --- configuration -------------------------------------------------------------------------------------------


class ConfigError(Exception):
    """The configuration file cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class LlmConfig:
    provider: str
    base_url: str
    model: str
    api_key: str = field(repr=False)


@dataclass(frozen=True)
class Config:
    instance_id: str
    agent_token: str = field(repr=False)
    usage_url: str
    manifest_id: str
    llm: LlmConfig | None


def load_config(path: str) -> Config:
    try:
        with open(path, encoding="utf-8") as file:
            document = json.load(file)
    except OSError as error:
        raise ConfigError(f"{path}: {error.strerror}") from None
    except ValueError as error:
        raise ConfigError(f"{path}: not JSON: {error}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: not a JSON object")
    llm = document.get("llm")
    if llm is not None and not isinstance(llm, dict):
        raise ConfigError(f'{path}: "llm" must be an object')
    return Config(
        instance_id=_string(document, "instance_id", path),
        agent_token=_string(document, "agent_token", path),
        usage_url=_url(document, "usage_url", path),
        manifest_id=_string(document, "manifest_id", path),
        llm=None if llm is None else _llm_config(llm, f"{path}: llm"),
    )


def _llm_config(section: dict[str, Any], where: str) -> LlmConfig:
    return LlmConfig(
        provider=_string(section, "provider", where),
        base_url=_url(section, "base_url", where),
        model=_string(section, "model", where),
        api_key=_string(section, "api_key", where),
    )


def _string(section: dict[str, Any], key: str, where: str) -> str:
    value = section.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(f'{where}: "{key}" must be a non-empty string')
    return value


def _url(section: dict[str, Any], key: str, where: str) -> str:
    value = _string(section, key, where)
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f'{where}: "{key}" must be an http:// or https:// URL')
    return value


# --- backends: where a reply comes from ----------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """One LLM call, as reported to smoke and sent in ``done``."""

    provider: str
    model: str
    input_tokens: int
    output_tokens: int


class BackendError(Exception):
    """The LLM failed; the message is what the client is told."""


class Backend(Protocol):
    def reply(self, message: str) -> Generator[str | Usage, None, None]:
        """The reply's text pieces as they come, then its ``Usage``; ``BackendError`` when the LLM fails."""
        ...


class EchoBackend:
    """The message back word by word: no LLM, no key; one token per word."""

    def reply(self, message: str) -> Generator[str | Usage, None, None]:
        words = message.split()
        for number, word in enumerate(words):
            yield word if number == 0 else f" {word}"
        yield Usage("echo", "echo-1", input_tokens=len(words), output_tokens=len(words))


class OpenAiBackend:
    """Any OpenAI-compatible ``POST {base_url}/chat/completions``, streamed, with the usage chunk asked for."""

    def __init__(self, llm: LlmConfig) -> None:
        self._llm = llm

    def reply(self, message: str) -> Generator[str | Usage, None, None]:
        request = {
            "model": self._llm.model,
            "messages": [{"role": "user", "content": message}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        url = self._llm.base_url.rstrip("/") + "/chat/completions"
        try:
            with _post_json(url, request, bearer=self._llm.api_key, timeout=LLM_TIMEOUT_SECONDS) as response:
                if response.status != 200:
                    raise BackendError(self._refusal(response))
                content_type = response.getheader("Content-Type", "")
                if not content_type.startswith("text/event-stream"):
                    raise BackendError(f"the LLM backend answered {content_type or 'no content type'}, not a stream")
                yield from self._pieces(response)
        except (OSError, http.client.HTTPException) as error:
            raise BackendError(f"the LLM backend could not be reached or broke off: {_describe(error)}") from None

    def _pieces(self, response: http.client.HTTPResponse) -> Generator[str | Usage, None, None]:
        """The content deltas of the stream's chunks, then the usage of its last chunk (OpenAI's stream format)."""
        usage = None
        for data in _event_data(response):
            if data == "[DONE]":
                break
            chunk = _json_object(data)
            if chunk.get("error"):
                raise BackendError(f"the LLM backend failed mid-stream: {self._redacted(chunk['error'])}")
            for choice in chunk.get("choices") or ():
                if text := _delta_text(choice):
                    yield text
            if chunk.get("usage"):
                usage = self._usage(chunk["usage"])
        if usage is None:
            raise BackendError("the LLM backend reported no usage (does it support stream_options.include_usage?)")
        yield usage

    def _usage(self, reported: Any) -> Usage:
        """The provider's own counts, under the names the manifest gives the provider and the model."""
        if isinstance(reported, dict):
            prompt, completion = reported.get("prompt_tokens"), reported.get("completion_tokens")
            if _is_count(prompt) and _is_count(completion):
                return Usage(self._llm.provider, self._llm.model, input_tokens=prompt, output_tokens=completion)
        raise BackendError(f"the LLM backend reported a usage without token counts: {reported!r:.200}")

    def _refusal(self, response: http.client.HTTPResponse) -> str:
        """Why the backend refused, with the upstream status and, if it said one, its error message."""
        refusal = f"the LLM backend answered HTTP {response.status} {response.reason}".rstrip()
        try:
            said = json.loads(response.read(4096)).get("error")
        except (ValueError, AttributeError):
            return refusal
        return f"{refusal}: {self._redacted(said)}" if said else refusal

    def _redacted(self, error: Any) -> str:
        """An upstream error message, short, and without the API key should the backend echo it."""
        message = error.get("message", error) if isinstance(error, dict) else error
        return f"{message}".replace(self._llm.api_key, "***")[:200]


def _event_data(response: http.client.HTTPResponse) -> Iterator[str]:
    """The ``data`` of each Server-Sent Event of ``response``, as soon as its blank line arrives."""
    lines: list[str] = []
    for raw in iter(response.readline, b""):
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if line.startswith("data:"):
            lines.append(line[len("data:") :].removeprefix(" "))
        elif not line and lines:
            yield "\n".join(lines)
            lines = []


def _delta_text(choice: Any) -> str:
    """The text a chunk's choice adds (``{"delta": {"content": "..."}}``), or "" (a role, a tool call, the end)."""
    delta = choice.get("delta") if isinstance(choice, dict) else None
    text = delta.get("content") if isinstance(delta, dict) else None
    return text if isinstance(text, str) else ""


def _is_count(value: Any) -> TypeGuard[int]:
    return type(value) is int and value >= 0


def _json_object(data: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise BackendError(f"the LLM backend sent an event that is not a JSON object: {data:.200}")
    return value


# --- the turn: reply, usage report, done ---------------------------------------------------------------------


class EventStream:
    """Server-Sent Events to one client, each written to the socket at once, with ids counting from 1."""

    def __init__(self, out: BufferedIOBase) -> None:
        self._out = out
        self._last_id = 0

    def send(self, event: str, data: dict[str, Any]) -> None:
        self._last_id += 1
        self._out.write(f"event: {event}\nid: {self._last_id}\ndata: {json.dumps(data)}\n\n".encode())
        self._out.flush()


def run_turn(backend: Backend, config: Config, message: str, events: EventStream, request_id: str) -> str:
    """Stream the reply to ``events``, report its usage, end with ``done`` or ``error``; return how it went.

    Raises:
        ConnectionError, TimeoutError: the client went away (the LLM stream is closed with the reply).
    """
    usage = None
    try:
        with closing(backend.reply(message)) as pieces:
            for piece in pieces:
                if isinstance(piece, Usage):
                    usage = piece
                else:
                    events.send("delta", {"text": piece})
    except BackendError as error:
        events.send("error", {"detail": str(error)})
        return f"failed: {error}"
    assert usage is not None, "every backend ends its reply with its usage"
    if (problem := report_usage(config, usage, request_id)) is not None:
        events.send("error", {"detail": problem})
        return f"failed: {problem}"
    events.send("done", {"usage": asdict(usage)})
    return f"done: {usage.provider}/{usage.model}, {usage.input_tokens} tokens in, {usage.output_tokens} out"


def report_usage(config: Config, usage: Usage, request_id: str) -> str | None:
    """POST the turn's usage to ``usage_url``: None once it answered 2xx, else why it did not.

    A network error or a 5xx is tried again, with the same ``request_id`` (smoke counts a request id once, so a
    report whose answer was lost is not counted twice); any other answer is final (401: the token was revoked).
    """
    report = {"request_id": request_id, **asdict(usage)}
    for attempt in range(1, USAGE_ATTEMPTS + 1):
        problem, retryable = _post_usage(config, report)
        if problem is None or not retryable:
            return problem
        if attempt < USAGE_ATTEMPTS:
            time.sleep(USAGE_BACKOFF_SECONDS * 2 ** (attempt - 1))
    return f"{problem} (tried {USAGE_ATTEMPTS} times)"


def _post_usage(config: Config, report: dict[str, Any]) -> tuple[str | None, bool]:
    """One attempt: (None, False) once answered 2xx, else (why not, whether another attempt may succeed)."""
    try:
        with _post_json(config.usage_url, report, bearer=config.agent_token, timeout=USAGE_TIMEOUT_SECONDS) as answer:
            answer.read()
    except (OSError, http.client.HTTPException) as error:
        return f"usage report failed: {_describe(error)}", True
    if 200 <= answer.status < 300:
        return None, False
    return f"usage report failed: HTTP {answer.status}", answer.status >= 500


@contextmanager
def _post_json(url: str, payload: object, *, bearer: str, timeout: float) -> Iterator[http.client.HTTPResponse]:
    """POST ``payload`` as JSON with a bearer token; every socket operation is bounded by ``timeout`` seconds.

    ``http.client`` rather than ``urllib``: no redirect turns the POST into a GET, no proxy is picked up from the
    environment. HTTPS verifies the server against the system's certificates.
    """
    parts = urlsplit(url)
    connection_type = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = connection_type(parts.hostname or "", parts.port, timeout=timeout)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = {
        "Authorization": f"Bearer {bearer}",
        "Content-Type": "application/json",
        "User-Agent": "smoke-reference-agent",
    }
    try:
        connection.request("POST", target, body=json.dumps(payload).encode(), headers=headers)
        yield connection.getresponse()
    finally:
        connection.close()


def _describe(error: BaseException) -> str:
    return str(error) or type(error).__name__


# --- the HTTP server -----------------------------------------------------------------------------------------


class AgentServer(ThreadingHTTPServer):
    """One thread per connection; the configuration and the backend are shared, read-only."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], config: Config) -> None:
        self.config = config
        self.backend: Backend = EchoBackend() if config.llm is None else OpenAiBackend(config.llm)
        super().__init__(address, AgentHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away is no error worth a traceback."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class AgentHandler(BaseHTTPRequestHandler):
    server: AgentServer
    timeout = CLIENT_TIMEOUT_SECONDS
    disable_nagle_algorithm = True  # each event leaves at once instead of waiting for the previous one's ACK

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._answer(200, {"status": "ok"})
        else:
            self._answer(404, {"detail": "not found"})

    def do_POST(self) -> None:
        if self.path != "/v1/chat":
            self._answer(404, {"detail": "not found"})
            return
        body = self._body()  # read before answering anything: closing on an unread body could reset the answer
        if body is None:
            return
        if not self._authorized():
            self._answer(401, {"detail": "Not authenticated"}, {"WWW-Authenticate": "Bearer"})
            return
        message = _chat_message(body)
        if message is None:
            self._answer(422, {"detail": 'the body must be a JSON object {"message": "..."}'})
            return
        self._stream_turn(message)

    def _body(self) -> bytes | None:
        """The request body, or None after answering why it cannot be read."""
        length = self.headers.get("Content-Length", "")
        if not (length.isascii() and length.isdigit()):
            self._answer(411, {"detail": "a Content-Length is required"})
            return None
        if int(length) > MAX_BODY_BYTES:
            self._answer(413, {"detail": f"the body is over {MAX_BODY_BYTES} bytes"})
            return None
        return self.rfile.read(int(length))

    def _authorized(self) -> bool:
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        expected = self.server.config.agent_token.encode()
        return hmac.compare_digest(token.strip().encode(), expected) and scheme.lower() == "bearer"

    def _stream_turn(self, message: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Accel-Buffering", "no")
        self.end_headers()
        request_id = str(uuid.uuid4())
        started = time.monotonic()
        try:
            outcome = run_turn(self.server.backend, self.server.config, message, EventStream(self.wfile), request_id)
        except (ConnectionError, TimeoutError):
            outcome = "the client went away"
        log(f"turn {request_id}: {outcome} ({time.monotonic() - started:.2f} s)")

    def _answer(self, status: int, body: dict[str, str], headers: dict[str, str] | None = None) -> None:
        encoded = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(encoded)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(encoded)

    def version_string(self) -> str:
        return "smoke-agent"

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Requests are not logged one by one: each turn logs its own line."""

    def log_message(self, format: str, *args: Any) -> None:
        log(f"{self.address_string()}: {format % args}")


def _chat_message(body: bytes) -> str | None:
    try:
        document = json.loads(body)
    except ValueError:
        return None
    message = document.get("message") if isinstance(document, dict) else None
    return message if isinstance(message, str) else None


def log(line: str) -> None:
    print(f"smoke-agent: {line}", file=sys.stderr, flush=True)


# --- the command ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="smoke-agent", description="smoke's reference agent: chat turns and usage reports for smoke's CI"
    )
    parser.add_argument("--config", required=True, metavar="PATH", help="the agent's JSON configuration")
    parser.add_argument("--host", default="0.0.0.0", help="the address to listen on (default 0.0.0.0)")  # noqa: S104
    parser.add_argument("--port", type=int, default=8080, help="the port to listen on (default 8080)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as error:
        log(f"bad configuration: {error}")
        return EXIT_BAD_CONFIG
    try:
        server = AgentServer((args.host, args.port), config)
    except OSError as error:
        log(f"cannot listen on {args.host}:{args.port}: {error.strerror or error}")
        return 1
    backend = "echo" if config.llm is None else f"{config.llm.provider} {config.llm.model} at {config.llm.base_url}"
    log(f"listening on http://{args.host}:{server.server_port}: instance {config.instance_id}, {backend}")
    with server:
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
