"""Logs and metrics: structured logs (``LOG_FORMAT=json|console``) with secrets redacted, Prometheus metrics.

Every log record, smoke's own and the libraries' (saq, uvicorn, httpx), goes through one structlog pipeline. The
request id (API) and the job and instance ids (worker) are bound as context variables, so each line carries them.

A log line cannot be forged by what a client sent (a path, a key, a header value): the JSON renderer escapes every
control character itself, and for the console every character that could end a line, move the cursor or colour the
terminal is written as an escape (``\n``, ``\x1b``, ``\u2028``); a traceback's lines are indented, so none of them
can pass for a record of its own. saq's line per job state change is debug output.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterable
from contextvars import ContextVar
from typing import Any, Final

import structlog
from prometheus_client import Counter, Gauge, Histogram
from structlog.types import EventDict, Processor

__all__ = (
    "CHAT_STREAMS",
    "CHAT_TURNS",
    "HTTP_REQUESTS",
    "HTTP_SECONDS",
    "JOBS",
    "JOB_SECONDS",
    "PROVISION_SECONDS",
    "REQUEST_ID",
    "RequestContextMiddleware",
    "configure_logging",
    "escaped",
)

REDACTED: Final = "[REDACTED]"
_FORGEABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
"""C0 and C1 controls (CR, LF, ESC...), DEL, the Unicode line and paragraph separators, the bidirectional marks."""
_SHORT_ESCAPES: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s'\",]+")
_SECRET_KEYS = frozenset({"authorization", "token", "agent_token", "ops_bearer_token", "hetzner_api_token", "secret"})

HTTP_REQUESTS = Counter("smoke_http_requests_total", "HTTP requests answered", ["method", "route", "status"])
HTTP_SECONDS = Histogram("smoke_http_request_seconds", "Time to the response's first byte", ["method", "route"])
JOBS = Counter("smoke_jobs_total", "Jobs run by this worker, by outcome", ["function", "outcome"])
JOB_SECONDS = Histogram(
    "smoke_job_seconds", "Job run time", ["function"], buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)
)
PROVISION_SECONDS = Histogram(
    "smoke_provision_to_running_seconds",
    "From the provision request being queued to the instance running",
    buckets=(0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
)
CHAT_STREAMS = Gauge("smoke_chat_streams_active", "Chat turns being relayed now")
CHAT_TURNS = Counter("smoke_chat_turns_total", "Chat turns relayed, by how they ended", ["outcome"])


class _Redactor:
    """Replace the configured secrets, any ``Bearer <token>`` and values of secret-named keys."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return _BEARER.sub(rf"\g<1>{REDACTED}", text)

    def __call__(self, _: Any, __: str, event: EventDict) -> EventDict:
        for key, value in event.items():
            if key.lower() in _SECRET_KEYS:
                event[key] = REDACTED
            elif isinstance(value, str):
                event[key] = self.scrub(value)
        return event


def _escape(match: re.Match[str]) -> str:
    char = match[0]
    return _SHORT_ESCAPES.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


def escaped(text: str) -> str:
    """``text`` with every character that could forge a console line written as its escape, e.g. ``\\n``."""
    return _FORGEABLE.sub(_escape, text)


def _escape_for_the_console(_: Any, __: str, event: EventDict) -> EventDict:
    """Every string value escaped; a traceback keeps its lines, each indented under the record's own line."""
    for key, value in event.items():
        if key == "exception" and isinstance(value, str):
            event[key] = "\n".join(f"  {escaped(line)}" for line in value.split("\n"))
        elif isinstance(value, str):
            event[key] = escaped(value)
    return event


def configure_logging(level: str, log_format: str, *, secrets: Iterable[str] = ()) -> None:
    """Route every logger through structlog, as JSON lines or for a console, with ``secrets`` never shown."""
    redact = _Redactor(secrets)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        _add_request_id,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    rendering: list[Processor] = (
        [structlog.processors.JSONRenderer()]
        if log_format == "json"
        else [
            _escape_for_the_console,
            structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback),
        ]
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact,
            *rendering,
        ],
    )
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    quiet = max(logging.WARNING, root.level)
    for chatty in ("pgserver", "alembic", "httpx", "httpcore", "uvicorn.access", "asyncio"):
        logging.getLogger(chatty).setLevel(quiet)
    logging.getLogger("saq").addFilter(_SAQ_LOG)


class _SaqLog(logging.Filter):
    """saq's own noise out of the way: its line per job state change is DEBUG output.

    saq logs a line per job state change (processing, finished, retrying, enqueuing, cron scheduling) and ``Worker
    starting: <saq.queue... object at 0x...>``; the worker logs its own start and stop lines, naming the queue, and
    each job failure in one line (``smoke.worker.log``).
    """

    STATE_CHANGES: Final = frozenset(
        {
            "Processing %s",
            "Finished %s",
            "Retrying %s",
            "Enqueuing %s",
            "Scheduled %s",
            "Worker starting: %s",
            "Working shutting down",
            "Found %d active workers for queue %s",
        }
    )
    EXPECTED_AT_STOP: Final = "Some tasks did not finish within the shutdown grace period"
    """saq warns at every stop that its idle loops were cancelled: expected with no grace period, so not shown."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg in self.STATE_CHANGES:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return not str(record.msg).startswith(self.EXPECTED_AT_STOP)


_SAQ_LOG: Final = _SaqLog()


REQUEST_ID: Final[ContextVar[str | None]] = ContextVar("smoke_request_id", default=None)
"""The id of the request being served (API), put on every log record by ``_add_request_id``."""


def _add_request_id(_: Any, __: str, event: EventDict) -> EventDict:
    request_id = REQUEST_ID.get()
    if request_id is not None:
        event.setdefault("request_id", request_id)
    return event


class _RouteMetrics:
    """The counter and histogram children of one ``(method, route, status)``, looked up once per process."""

    __slots__ = ("count", "seconds")

    def __init__(self, method: str, route: str, status: int) -> None:
        self.count = HTTP_REQUESTS.labels(method, route, status)
        self.seconds = HTTP_SECONDS.labels(method, route)


class RequestContextMiddleware:
    """Bind a request id to the logs of each request (from ``X-Request-ID``, else new), echo it, count and time it.

    Pure ASGI and lean, as it runs for every request: one pass over the headers, the metric children cached per
    ``(method, route template, status)``, one context variable set and reset (``REQUEST_ID``).
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self._metrics: dict[tuple[str, str, int], _RouteMetrics] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope["headers"])
        started = time.perf_counter()
        metrics = self._metrics

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", request_id.encode())]
                key = (scope["method"], scope.get("path_template") or "unmatched", message["status"])
                route = metrics.get(key)
                if route is None:
                    route = metrics[key] = _RouteMetrics(*key)
                route.count.inc()
                route.seconds.observe(time.perf_counter() - started)
            await send(message)

        token = REQUEST_ID.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)


def _request_id(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The caller's ``X-Request-ID`` (its first 128 characters) when printable, else a new random one."""
    for name, value in headers:
        if name == b"x-request-id":
            incoming = value[:128].decode("latin-1")
            if incoming and incoming.isprintable():
                return incoming
            break
    return os.urandom(16).hex()
