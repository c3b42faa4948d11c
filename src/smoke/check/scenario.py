"""The scenario of ``smoke check``: each step against the smoke API, within its share of the time, cleanup always."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final
from uuid import UUID, uuid4

import httpx

from smoke.check.provisioning import MAX_ATTEMPTS, KeyedProvision
from smoke.check.report import CheckReport, Observer, StepResult
from smoke.client import (
    PROVISION_CHOICE_FIELDS,
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
ASIDE_TIMEOUT: Final = 5.0
"""Seconds for a request that only explains a failure (the instance's events, the catalog's choices)."""
_CREDENTIALS_REFUSED: Final = re.compile(r": (?:unauthorized|forbidden|token_readonly): ")
"""A reason of the form ``<cloud>: <code>: <message>`` whose code says the cloud refuses the worker's token: the
worker retries a cleanup for ever then (an operator must fix the token), so waiting for its end is pointless."""
_REFUSAL_HINT: Final = "the cloud refuses the worker's HETZNER_API_TOKEN"


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
    retry_delay: float = 0.5
    """Seconds before a provision is tried again with the same key; doubled for each further try."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_url", normalized_base_url(self.base_url))
        if not self.token:
            raise ValueError("no token: pass --token or set OPS_BEARER_TOKEN")
        if not self.timeout > 0:
            raise ValueError(f"--timeout must be positive, not {self.timeout}")
        if not 1 <= len(self.message) <= MAX_MESSAGE:
            raise ValueError(f"--message must be 1..{MAX_MESSAGE} characters")


class _StepFailed(Exception):
    """The step saw something wrong; ``message`` says what, in one line; ``usage`` when the command was misused."""

    def __init__(self, message: str, *, usage: bool = False) -> None:
        self.message = message
        self.usage = usage
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
        self._provision_request = KeyedProvision(
            idempotency_key=self.report.idempotency_key,
            manifest_id=options.manifest_id,
            region_id=options.region_id,
            tier_id=options.tier_id,
            retry_delay=options.retry_delay,
        )
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
        """Delete what the run created, also what its key may stand for when the provision's answer never came."""
        if self.options.keep:
            self._skip("delete", "wait-deleted", reason="--keep: the instance is left as it is")
            return
        if self.report.instance_id is None and not self._provision_request.outstanding:
            self._skip("delete", "wait-deleted", reason="nothing to delete")
            return
        loop = asyncio.get_running_loop()
        deadline = max(started + self.options.timeout, loop.time() + self.options.timeout * CLEANUP_SHARE)
        if not await self._step(client, "delete", deadline, self._delete):
            return
        if self.report.instance_id is None:
            self._skip("wait-deleted", reason="nothing to delete: the API holds no instance under the key")
        else:
            await self._step(client, "wait-deleted", deadline, self._wait_deleted)

    def _skip(self, *names: str, reason: str) -> None:
        for name in names:
            step = self.report.step(name)
            step.status, step.message = "skipped", reason
            self._observer.step_finished(step)

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
            await self._fail(client, step, f"{name} timed out after {time.monotonic() - step.started:.0f} s{seen}")
        except _StepFailed as error:
            await self._fail(client, step, error.message, usage=error.usage)
        except SmokeClientError as error:
            message, usage = self._explain(error)
            await self._fail(client, step, message, usage=usage)
        except asyncio.CancelledError:
            step.status, step.message = "failed", "interrupted"
            raise
        finally:
            step.seconds = time.monotonic() - step.started
            self._observer.step_finished(step)
        return step.status == "passed"

    async def _fail(self, client: SmokeClient, step: StepResult, message: str, *, usage: bool = False) -> None:
        """Record the failure in one line: what the step saw, then why the instance says it went wrong, if it does."""
        step.status, step.message = "failed", message
        if usage:
            if self.report.usage_error is None:
                self.report.usage_error = message
            return
        step.reason = await self._last_reason(client)
        step.message = _with_reason(message, step.reason)

    async def _last_reason(self, client: SmokeClient) -> str | None:
        """The reason of the instance's latest event (Smoke Events); None for no instance, no reason or no answer."""
        if self.report.instance_id is None:
            return None
        try:
            async with asyncio.timeout(ASIDE_TIMEOUT):
                return (await client.events(self.report.instance_id)).last_reason
        except (SmokeClientError, TimeoutError):
            return None

    def _explain(self, error: SmokeClientError) -> tuple[str, bool]:
        """A one-line reason for ``error``, and whether it is the command's usage or configuration."""
        url = self.options.base_url
        if isinstance(error, NotAuthenticated):
            return "the API refused the token (401 Not authenticated): check --token or OPS_BEARER_TOKEN", True
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
        def failed(attempt: int, error: SmokeClientError, delay: float) -> None:
            why, _ = self._explain(error)
            self._seen(step, f"try {attempt} of {MAX_ATTEMPTS}: {why}; again in {delay:.1f} s with the same key")

        try:
            accepted = await self._provision_request.send(client, failed)
        except ValidationFailed as error:
            raise _StepFailed(await self._refusal(client, error), usage=True) from None
        except SmokeClientError as error:
            if not self._provision_request.outstanding:
                raise
            why, _ = self._explain(error)
            raise _StepFailed(f"gave up after {MAX_ATTEMPTS} tries: {why}") from None
        self.report.instance_id = str(accepted.instance_id)
        return f"instance {accepted.instance_id}"

    async def _refusal(self, client: SmokeClient, error: ValidationFailed) -> str:
        """The API's 422 in one line, with the values the catalog offers for each catalog field it names."""
        fields = [item.loc[1] for item in error.errors if item.loc[:1] == ["body"] and len(item.loc) == 2]
        wrong = [field for field in PROVISION_CHOICE_FIELDS if field in fields]
        choices: dict[str, list[str]] = {}
        if wrong:
            with contextlib.suppress(SmokeClientError, TimeoutError):
                async with asyncio.timeout(ASIDE_TIMEOUT):
                    choices = await client.provision_choices()
        offered = "".join(f"; valid {field}: {', '.join(choices[field])}" for field in wrong if field in choices)
        return f"provision refused: {error.detail}{offered}"

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
            if instance.status == "running":
                return f"{instance.hostname} is running"
            if instance.status == "failed":
                raise _StepFailed("the instance failed to provision (status failed)")
            if instance.status in ("deleting", "deleted"):
                raise _StepFailed(f"the instance was deleted before it ran (status {instance.status})")
            await self._still_waiting(client, step, instance.status)

    async def _still_waiting(self, client: SmokeClient, step: StepResult, status: str) -> None:
        """Show where the instance is and what it is retrying, then wait; fail now when no wait can help."""
        reason = await self._last_reason(client)
        self._seen(step, f"status {status}" + (f"; {reason}" if reason else ""))
        if reason is not None and _CREDENTIALS_REFUSED.search(reason):
            raise _StepFailed(f"no wait can help: {_REFUSAL_HINT} (status {status})")
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
        found = ""
        if self.report.instance_id is None:
            instance_id = await self._instance_of_key(client, step)
            if instance_id is None:
                return "nothing to delete: the API holds no instance under the key"
            self.report.instance_id, found = str(instance_id), f"instance {instance_id}, found by its key: "
        deletion = await client.delete(self._instance_id)
        return f"{found}status {deletion.status}"

    async def _instance_of_key(self, client: SmokeClient, step: StepResult) -> UUID | None:
        def failed(attempt: int, error: SmokeClientError, delay: float) -> None:
            why, _ = self._explain(error)
            self._seen(step, f"the key is not resolved yet ({why}); again in {delay:.1f} s")

        self._seen(step, f"resolving the key {self.report.idempotency_key} to its instance")
        return await self._provision_request.resolve(client, failed)

    async def _wait_deleted(self, client: SmokeClient, step: StepResult) -> str:
        while True:
            instance = await client.status(self._instance_id)
            if instance.status == "deleted":
                return "the server is gone"
            await self._still_waiting(client, step, instance.status)


def _with_reason(message: str, reason: str | None) -> str:
    """``message``, then the instance's ``reason`` unless it says it already, and what a refused token means."""
    if reason is None or reason in message:
        return message
    refused = _CREDENTIALS_REFUSED.search(reason) and _REFUSAL_HINT not in message
    return f"{message}; reason: {reason}" + (f"; {_REFUSAL_HINT}" if refused else "")


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
