"""Logs and metrics: structured logs (``LOG_FORMAT=json|console``) with secrets redacted, Prometheus metrics.

Every log record, smoke's own and the libraries' (saq, uvicorn, httpx), goes through one structlog pipeline. The
request id (API) and the job and instance ids (worker) are bound as context variables, so each line carries them.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterable
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
    "RequestContextMiddleware",
    "configure_logging",
)

REDACTED: Final = "[REDACTED]"
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


def configure_logging(level: str, log_format: str, *, secrets: Iterable[str] = ()) -> None:
    """Route every logger through structlog, as JSON lines or for a console, with ``secrets`` never shown."""
    redact = _Redactor(secrets)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)
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
            renderer,
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
    logging.getLogger("saq").addFilter(_expected_saq_shutdown)


def _expected_saq_shutdown(record: logging.LogRecord) -> bool:
    """saq warns at every stop that its idle loops were cancelled: expected with no grace period, so not shown."""
    return not record.getMessage().startswith("Some tasks did not finish within the shutdown grace period")


class RequestContextMiddleware:
    """Bind a request id to the logs of each request (from ``X-Request-ID``, else new), echo it, count and time it."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")[:128]
        request_id = incoming if incoming.isprintable() and incoming else uuid.uuid4().hex
        started = time.perf_counter()

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
                route = scope.get("path_template") or "unmatched"
                HTTP_REQUESTS.labels(scope["method"], route, message["status"]).inc()
                HTTP_SECONDS.labels(scope["method"], route).observe(time.perf_counter() - started)
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            await self.app(scope, receive, send_with_id)
