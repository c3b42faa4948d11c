"""``smoke check``: the CI scenario against a running smoke API, with live progress and reports.

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

The package: ``scenario`` runs the steps, ``report`` holds what they found, ``console`` shows it (progress on
stderr, so that stdout carries only the ``--json`` document), ``junit`` writes it for CI test views. Like
``smoke.client`` it imports no server code.
"""

from smoke.check.console import ConsoleProgress, emit_report, stderr_console
from smoke.check.junit import junit_xml
from smoke.check.report import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_PASSED,
    EXIT_USAGE,
    STEPS,
    CheckReport,
    Observer,
    StepResult,
)
from smoke.check.scenario import CheckOptions, SmokeCheck

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
    "stderr_console",
)
