"""What one run of ``smoke check`` found: a result per step, the exit code, the summary line, the JSON document."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Final, Literal

__all__ = (
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_PASSED",
    "EXIT_USAGE",
    "STEPS",
    "CheckReport",
    "Observer",
    "StepResult",
    "StepStatus",
)

STEPS: Final = ("provision", "poll", "wait-running", "chat", "llm-events", "delete", "wait-deleted")
EXIT_PASSED: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130

StepStatus = Literal["pending", "running", "passed", "failed", "skipped"]


@dataclass(slots=True)
class StepResult:
    name: str
    status: StepStatus = "pending"
    seconds: float = 0.0
    message: str = ""
    last_seen: str = ""
    """What the step saw last while waiting (``status provisioning``): named when it runs out of time."""
    reason: str | None = None
    """For a failed step, the reason of the instance's latest event (``Hetzner: unauthorized: ...``), if it gave one;
    ``message`` ends with it too."""
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
                {
                    "name": s.name,
                    "status": s.status,
                    "seconds": round(s.seconds, 3),
                    "message": s.message,
                    "reason": s.reason,
                }
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
