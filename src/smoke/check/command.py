"""``smoke check`` as a command: run the scenario with live progress, then write its reports; the exit code."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from smoke.check.console import ConsoleProgress, emit_report, stderr_console
from smoke.check.scenario import CheckOptions, SmokeCheck
from smoke.process import cancelled_by_sigterm, run

__all__ = ("run_check",)


def run_check(options: CheckOptions, *, json_output: bool = False, junit_path: Path | None = None) -> int:
    """Run the check on its own event loop; Ctrl-C and SIGTERM interrupt it after it deleted what it created."""
    console = stderr_console()
    check = SmokeCheck(options, observer=ConsoleProgress(console))
    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):  # the report says "interrupted"
        run(cancelled_by_sigterm(check.run()))
    return emit_report(check.report, console=console, json_output=json_output, junit_path=junit_path)
