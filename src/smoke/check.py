"""``smoke check``: the CI scenario of SPEC §6 against a running smoke API, with live progress and reports.

Steps, in order: ``provision`` → ``poll`` (by idempotency key until the worker has inserted the instance) →
``wait-running`` → ``chat`` (one turn, the reply shown as it streams) → ``llm-events`` (the turn is metered) →
``delete`` → ``wait-deleted`` (the cleanup job confirmed the server gone: a leak fails the check). After the first
failed step the later forward steps are skipped, but ``delete`` and ``wait-deleted`` still run whenever an
instance id was handed out (also after Ctrl-C), unless ``keep``.

Time: the forward steps share the first 80 % of ``timeout``; the cleanup steps get what is left, and at least 20 %
of ``timeout`` even when a forward step ran late. A step that runs out of time fails with the last status it saw.

Exit codes: 0 every step passed (skipped by ``keep`` counts as passed), 1 a step failed (an unreachable API is a
failed check: the service is down, not the command misused), 2 bad usage or configuration (missing token or
malformed URL before anything runs; the API refusing the token, 422 for the provision body such as an unknown
catalog id, or a base URL that does not answer like the smoke API), 130 interrupted.

Output: progress goes to stderr (``ConsoleProgress``), so that stdout carries only the ``--json`` document.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal
from uuid import uuid4

import httpx
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

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

__all__ = (
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_PASSED",
    "EXIT_USAGE",
    "STEPS",
    "CheckOptions",
    "CheckReport",
    "ConsoleProgress",
    "Observer",
    "SmokeCheck",
    "StepResult",
    "emit_report",
    "junit_xml",
)

STEPS: Final = ("provision", "poll", "wait-running", "chat", "llm-events", "delete", "wait-deleted")
EXIT_PASSED: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130
FORWARD_SHARE: Final = 0.8
CLEANUP_SHARE: Final = 0.2
LLM_EVENTS_WINDOW: Final = 900
MAX_MESSAGE: Final = 4000

StepStatus = Literal["pending", "running", "passed", "failed", "skipped"]


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


@dataclass(slots=True)
class StepResult:
    name: str
    status: StepStatus = "pending"
    seconds: float = 0.0
    message: str = ""
    last_seen: str = ""
    """What the step saw last while waiting (``status provisioning``): named when it runs out of time."""
    started: float | None = None


@dataclass(slots=True)
class CheckReport:
    """The outcome of one run, filled in as it goes; ``exit_code`` and ``summary`` read it."""

    base_url: str
    idempotency_key: str
    steps: list[StepResult] = field(default_factory=lambda: [StepResult(name) for name in STEPS])
    instance_id: str | None = None
    reply: str = ""
    usage_error: str | None = None
    """Set when a step failed because of the command's usage or configuration (exit code 2)."""
    interrupted: bool = False
    started_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    seconds: float = 0.0

    def step(self, name: str) -> StepResult:
        return next(step for step in self.steps if step.name == name)

    @property
    def failed(self) -> list[StepResult]:
        return [step for step in self.steps if step.status == "failed"]

    @property
    def passed(self) -> bool:
        return not self.interrupted and not self.failed and all(s.status in ("passed", "skipped") for s in self.steps)

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        if self.usage_error is not None:
            return EXIT_USAGE
        return EXIT_PASSED if self.passed else EXIT_FAILED

    @property
    def summary(self) -> str:
        """One line: what happened, and for a failure the first failed step and why."""
        if self.usage_error is not None:
            return f"smoke check: {self.usage_error}"
        if self.passed:
            kept = " (kept: --keep)" if self.step("delete").status == "skipped" else ""
            return f"smoke check passed in {self.seconds:.1f} s: instance {self.instance_id}{kept}"
        if self.interrupted:
            during = [step.name for step in self.failed if step.message == "interrupted"]
            others = [step for step in self.failed if step.message != "interrupted"]
            text = "smoke check interrupted" + (f" during {during[0]}" if during else "")
            return text + (f"; {others[0].name} failed: {others[0].message}" if others else "")
        first, *rest = self.failed
        also = f" (also failed: {', '.join(step.name for step in rest)})" if rest else ""
        return f"smoke check failed at {first.name}: {first.message}{also}"

    def finish(self, reason: str) -> None:
        """Settle steps left pending or running (skipped, or failed as interrupted). Idempotent."""
        for step in self.steps:
            if step.status == "running":
                step.status, step.message = "failed", "interrupted"
            elif step.status == "pending":
                step.status, step.message = "skipped", reason

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "exit_code": self.exit_code,
            "message": self.summary,
            "base_url": self.base_url,
            "idempotency_key": self.idempotency_key,
            "instance_id": self.instance_id,
            "seconds": round(self.seconds, 3),
            "reply": self.reply,
            "steps": [
                {"name": s.name, "status": s.status, "seconds": round(s.seconds, 3), "message": s.message}
                for s in self.steps
            ],
        }


class Observer:
    """Hears the run as it goes; every method does nothing here. ``ConsoleProgress`` shows it."""

    def started(self, report: CheckReport) -> None:
        """The run began; ``report.steps`` lists every step, pending."""

    def step_started(self, step: StepResult) -> None: ...

    def step_progress(self, step: StepResult) -> None:
        """``step.last_seen`` changed (a new status while waiting, another chunk of the reply)."""

    def reply_text(self, text: str) -> None:
        """One more piece of the chat reply, as it arrives."""

    def step_finished(self, step: StepResult) -> None: ...

    def finished(self, report: CheckReport) -> None: ...


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


_ICONS: Final[dict[str, tuple[str, str]]] = {
    "passed": ("✓", "green"),
    "failed": ("✗", "red"),
    "skipped": ("-", "dim"),
    "pending": ("·", "dim"),
}


class ConsoleProgress(Observer):
    """Live progress on a rich console (``smoke check`` uses stderr).

    On a terminal: a live table, one line per step with its state and running time, and the chat reply below it
    as it streams. Elsewhere (CI logs): one plain line per finished step (name, state, seconds, message), each new
    status seen while waiting, and the reply as it arrives; skipped steps are left to the reports, and so is a
    failure before any step passed (a stopped server, a wrong token: the summary line alone tells it).
    """

    def __init__(self, console: Console) -> None:
        self._console = console
        self._live: Live | None = None
        self._report: CheckReport | None = None
        self._reply_open = False
        self._any_passed = False

    def started(self, report: CheckReport) -> None:
        self._report = report
        if self._console.is_terminal:
            self._live = Live(console=self._console, get_renderable=self._render, refresh_per_second=10)
            self._live.start()

    def step_progress(self, step: StepResult) -> None:
        if self._live is None and step.name != "chat":
            self._line(Text(f"  {step.name}: {step.last_seen}", style="dim"))

    def reply_text(self, text: str) -> None:
        if self._live is None:
            if not self._reply_open:
                self._console.print("  reply: ", end="", soft_wrap=True)
                self._reply_open = True
            self._console.print(Text(text), end="", soft_wrap=True)

    def step_finished(self, step: StepResult) -> None:
        if self._reply_open:
            self._console.print()
            self._reply_open = False
        if self._live is not None or step.status == "skipped":
            return
        if step.status == "passed":
            self._any_passed = True
        elif not self._any_passed:
            return  # nothing happened yet: the summary line that follows says it all, in one line
        self._line(Text(f"{step.name:<12} {step.status:<7} {step.seconds:7.2f} s  {step.message}".rstrip()))

    def finished(self, report: CheckReport) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def _line(self, text: Text) -> None:
        self._console.print(text, soft_wrap=True)

    def _render(self) -> RenderableType:
        assert self._report is not None
        table = Table.grid(padding=(0, 1))
        now = time.monotonic()
        for step in self._report.steps:
            seconds = now - step.started if step.status == "running" and step.started else step.seconds
            if step.status == "running":
                icon: RenderableType = Spinner("dots", style="cyan")
                detail = step.last_seen
            else:
                symbol, style = _ICONS[step.status]
                icon, detail = Text(symbol, style=style), step.message
            timing = f"{seconds:6.1f} s" if step.status in ("running", "passed", "failed") else ""
            table.add_row(icon, Text(step.name, style="bold"), Text(step.status), Text(timing), Text(detail))
        if not self._report.reply:
            return table
        return Group(table, Text.assemble(("reply: ", "dim"), self._report.reply))


_XML_INVALID: Final = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(text: str) -> str:
    return _XML_INVALID.sub("\ufffd", text)


def junit_xml(report: CheckReport) -> str:
    """The report as JUnit XML: one ``testsuite`` "smoke check", one ``testcase`` per step (GitHub, GitLab)."""
    counts = {
        "tests": str(len(report.steps)),
        "failures": str(len(report.failed)),
        "errors": "0",
        "skipped": str(sum(step.status == "skipped" for step in report.steps)),
        "time": f"{report.seconds:.3f}",
    }
    suites = ET.Element("testsuites", {"name": "smoke"} | counts)
    suite = ET.SubElement(
        suites,
        "testsuite",
        {"name": "smoke check"} | counts | {"timestamp": report.started_at.strftime("%Y-%m-%dT%H:%M:%S")},
    )
    properties = ET.SubElement(suite, "properties")
    for name, value in (
        ("base_url", report.base_url),
        ("idempotency_key", report.idempotency_key),
        ("instance_id", report.instance_id or ""),
    ):
        ET.SubElement(properties, "property", name=name, value=_xml_text(value))
    for step in report.steps:
        case = ET.SubElement(suite, "testcase", classname="smoke.check", name=step.name, time=f"{step.seconds:.3f}")
        message = _xml_text(step.message)
        if step.status == "failed":
            ET.SubElement(case, "failure", message=message, type="StepFailed").text = message
        elif step.status == "skipped":
            ET.SubElement(case, "skipped", message=message)
        if step.name == "chat" and report.reply:
            ET.SubElement(case, "system-out").text = _xml_text(report.reply)
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def emit_report(
    report: CheckReport, *, console: Console, json_output: bool = False, junit_path: Path | None = None
) -> int:
    """Write the JUnit file and the ``--json`` document (stdout), print the summary line (console); the exit code."""
    report.finish("not run")
    if junit_path is not None:
        try:
            junit_path.write_text(junit_xml(report), encoding="utf-8")
        except OSError as error:
            console.print(Text(f"smoke check: cannot write {junit_path}: {error.strerror}"), soft_wrap=True)
            return EXIT_USAGE
    if json_output:
        print(json.dumps(report.to_json(), indent=2))
    style = "green" if report.passed else "red"
    console.print(Text(report.summary, style=style), soft_wrap=True)
    return report.exit_code
