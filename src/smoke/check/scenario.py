"""The scenario of ``smoke check``: each step against the smoke API, within its share of the time, cleanup always."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final
from uuid import uuid4

import httpx

from smoke.check.report import CheckReport, Observer, StepResult
from smoke.client import (
    ChatFailed,
    NotAuthenticated,
    SmokeApiError,
    SmokeClient,
    SmokeClientError,
    UnexpectedResponse,
    ValidationFailed,
    normalized_base_url,
)

__all__ = ("CheckOptions", "SmokeCheck")

FORWARD_SHARE: Final = 0.8
CLEANUP_SHARE: Final = 0.2
LLM_EVENTS_WINDOW: Final = 900
MAX_MESSAGE: Final = 4000


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckOptions:
    """What one run checks, and how long it may take.

    Raises:
        ValueError: a malformed base URL, an empty token, a timeout ≤ 0, or a message not 1..4000 characters.
    """

    base_url: str
    token: str = field(repr=False)
    manifest_id: str = "agent-default"
    region_id: str = "fsn1"
    tier_id: str = "small"
    message: str = "hello from smoke check"
    timeout: float = 900.0
    keep: bool = False
    poll_interval: float = 1.0
    request_timeout: float = 30.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_url", normalized_base_url(self.base_url))
        if not self.token:
            raise ValueError("no token: pass --token or set OPS_BEARER_TOKEN")
        if not self.timeout > 0:
            raise ValueError(f"--timeout must be positive, not {self.timeout}")
        if not 1 <= len(self.message) <= MAX_MESSAGE:
            raise ValueError(f"--message must be 1..{MAX_MESSAGE} characters")


class _StepFailed(Exception):
    """The step saw something wrong; ``message`` says what, in one line."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


Action = Callable[[SmokeClient, StepResult], Awaitable[str]]


class SmokeCheck:
    """One run of the scenario. ``run()`` fills ``report``, which stays readable when the run is interrupted."""

    def __init__(
        self,
        options: CheckOptions,
        *,
        observer: Observer | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.options = options
        self.report = CheckReport(options.base_url, f"check-{uuid4()}")
        self._observer = observer or Observer()
        self._transport = transport

    async def run(self) -> CheckReport:
        """Run every step; always clean up what was created (unless ``keep``), also when cancelled (Ctrl-C).

        A cancellation is absorbed long enough to delete the instance, then raised again.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        self._observer.started(self.report)
        client = SmokeClient(
            self.options.base_url, self.options.token, timeout=self.options.request_timeout, transport=self._transport
        )
        try:
            async with client:
                try:
                    await self._forward(client, started + self.options.timeout * FORWARD_SHARE)
                except asyncio.CancelledError:
                    self.report.interrupted = True
                    task = asyncio.current_task()
                    if task is not None:
                        task.uncancel()  # so that the cleanup's requests and deadlines work as usual
                    await self._cleanup(client, started)
                    raise
                try:
                    await self._cleanup(client, started)
                except asyncio.CancelledError:
                    self.report.interrupted = True
                    raise
        finally:
            self.report.seconds = loop.time() - started
            self.report.finish("interrupted" if self.report.interrupted else "not run: an earlier step failed")
            self._observer.finished(self.report)
        return self.report

    async def _forward(self, client: SmokeClient, deadline: float) -> None:
        actions: list[tuple[str, Action]] = [
            ("provision", self._provision),
            ("poll", self._poll),
            ("wait-running", self._wait_running),
            ("chat", self._chat),
            ("llm-events", self._llm_events),
        ]
        for name, action in actions:
            if not await self._step(client, name, deadline, action):
                return

    async def _cleanup(self, client: SmokeClient, started: float) -> None:
        delete, deleted = self.report.step("delete"), self.report.step("wait-deleted")
        if self.options.keep or self.report.instance_id is None:
            reason = "--keep: the instance is left as it is" if self.options.keep else "nothing to delete"
            for step in (delete, deleted):
                step.status, step.message = "skipped", reason
                self._observer.step_finished(step)
            return
        loop = asyncio.get_running_loop()
        deadline = max(started + self.options.timeout, loop.time() + self.options.timeout * CLEANUP_SHARE)
        if await self._step(client, "delete", deadline, self._delete):
            await self._step(client, "wait-deleted", deadline, self._wait_deleted)

    async def _step(self, client: SmokeClient, name: str, deadline: float, action: Action) -> bool:
        """Run one step within ``deadline`` (loop time); record and report its outcome; True when it passed."""
        step = self.report.step(name)
        step.status, step.started = "running", time.monotonic()
        self._observer.step_started(step)
        try:
            async with asyncio.timeout_at(deadline):
                step.message = await action(client, step)
            step.status = "passed"
        except TimeoutError:
            seen = f"; last seen: {step.last_seen}" if step.last_seen else ""
            self._fail(step, f"{name} timed out after {time.monotonic() - step.started:.0f} s{seen}")
        except _StepFailed as error:
            self._fail(step, error.message)
        except SmokeClientError as error:
            message, usage = self._explain(name, error)
            self._fail(step, message, usage=usage)
        except asyncio.CancelledError:
            self._fail(step, "interrupted")
            raise
        finally:
            step.seconds = time.monotonic() - step.started
            self._observer.step_finished(step)
        return step.status == "passed"

    def _fail(self, step: StepResult, message: str, *, usage: bool = False) -> None:
        step.status, step.message = "failed", message
        if usage and self.report.usage_error is None:
            self.report.usage_error = message

    def _explain(self, name: str, error: SmokeClientError) -> tuple[str, bool]:
        """A one-line reason for ``error``, and whether it is the command's usage or configuration."""
        url = self.options.base_url
        if isinstance(error, NotAuthenticated):
            return "the API refused the token (401 Not authenticated): check --token or OPS_BEARER_TOKEN", True
        if isinstance(error, ValidationFailed) and name == "provision":
            return f"provision refused: {error.detail}", True
        if isinstance(error, UnexpectedResponse) or (type(error) is SmokeApiError and error.status in (404, 405)):
            assert isinstance(error, SmokeApiError)
            answer = f"{error.method} {error.path} answered {error.status}: {error.detail}"
            return f"{url} does not answer like the smoke API ({answer}): check --base-url", True
        if isinstance(error, ChatFailed):
            return f"the chat stream failed: {error.detail}", False
        if isinstance(error, SmokeApiError):
            return f"{error.method} {error.path} answered {error.status}: {error.detail}", False
        return str(error), False

    def _seen(self, step: StepResult, seen: str) -> None:
        if seen != step.last_seen:
            step.last_seen = seen
            self._observer.step_progress(step)

    @property
    def _instance_id(self) -> str:
        assert self.report.instance_id is not None
        return self.report.instance_id

    async def _provision(self, client: SmokeClient, step: StepResult) -> str:
        options = self.options
        receipt = await client.provision(
            self.report.idempotency_key, options.manifest_id, options.region_id, options.tier_id
        )
        self.report.instance_id = str(receipt.instance_id)
        return f"instance {receipt.instance_id}"

    async def _poll(self, client: SmokeClient, step: StepResult) -> str:
        while True:
            result = await client.poll(self.report.idempotency_key)
            if result.found:
                if str(result.instance_id) != self.report.instance_id:
                    raise _StepFailed(f"the key resolved to instance {result.instance_id}, not {self._instance_id}")
                return f"found, status {result.status}"
            self._seen(step, "not found yet (is a worker running?)")
            await asyncio.sleep(self.options.poll_interval)

    async def _wait_running(self, client: SmokeClient, step: StepResult) -> str:
        while True:
            instance = await client.status(self._instance_id)
            self._seen(step, f"status {instance.status}")
            if instance.status == "running":
                return f"{instance.hostname} is running"
            if instance.status == "failed":
                raise _StepFailed("the instance failed to provision (status failed; the worker's log says why)")
            if instance.status in ("deleting", "deleted"):
                raise _StepFailed(f"the instance was deleted before it ran (status {instance.status})")
            await asyncio.sleep(self.options.poll_interval)

    async def _chat(self, client: SmokeClient, step: StepResult) -> str:
        deltas, usage = 0, ""
        self._seen(step, "no event yet")
        try:
            async for event in client.chat(self._instance_id, self.options.message):
                if event.event == "delta":
                    text = _field(event.data, "text")
                    if not isinstance(text, str):
                        raise _StepFailed(f"malformed delta event: {event.data[:200]!r}")
                    deltas += 1
                    self.report.reply += text
                    self._observer.reply_text(text)
                    self._seen(step, f"{_deltas(deltas)}, no done event yet")
                elif event.event == "done":
                    usage = _usage_text(_field(event.data, "usage"))
        except ChatFailed as error:
            after = f" after {_deltas(deltas)}" if deltas else ""
            raise _StepFailed(f"the chat stream failed{after}: {error.detail}") from None
        if deltas == 0:
            raise _StepFailed("the agent answered no text (a done event without any delta)")
        return f"{_deltas(deltas)}{usage}"

    async def _llm_events(self, client: SmokeClient, step: StepResult) -> str:
        events = await client.llm_events(self._instance_id, LLM_EVENTS_WINDOW)
        if events.count < 1:
            raise _StepFailed(f"the chat turn was not metered: no LLM usage event in the last {LLM_EVENTS_WINDOW} s")
        return f"count {events.count} ({', '.join(events.providers)})"

    async def _delete(self, client: SmokeClient, step: StepResult) -> str:
        deletion = await client.delete(self._instance_id)
        return f"status {deletion.status}"

    async def _wait_deleted(self, client: SmokeClient, step: StepResult) -> str:
        while True:
            instance = await client.status(self._instance_id)
            self._seen(step, f"status {instance.status}")
            if instance.status == "deleted":
                return "the server is gone"
            await asyncio.sleep(self.options.poll_interval)


def _deltas(count: int) -> str:
    return f"{count} delta" if count == 1 else f"{count} deltas"


def _field(data: str, name: str) -> Any:
    with contextlib.suppress(ValueError):
        decoded = json.loads(data)
        if isinstance(decoded, dict):
            return decoded.get(name)
    return None


def _usage_text(usage: Any) -> str:
    if not isinstance(usage, dict):
        return ""
    return (
        f"; usage {usage.get('provider')}/{usage.get('model')}: "
        f"{usage.get('input_tokens')} in, {usage.get('output_tokens')} out"
    )
