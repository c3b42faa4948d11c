"""What a person sees of a run: live progress on stderr while it goes, then the reports and the summary line."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Final

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from smoke.check.junit import junit_xml
from smoke.check.report import EXIT_USAGE, CheckReport, Observer, StepResult

__all__ = ("ConsoleProgress", "emit_report", "stderr_console")

_ICONS: Final[dict[str, tuple[str, str]]] = {
    "passed": ("✓", "green"),
    "failed": ("✗", "red"),
    "skipped": ("-", "dim"),
    "pending": ("·", "dim"),
}


def stderr_console() -> Console:
    """The console progress and the summary go to: stderr, so that stdout carries only the ``--json`` document."""
    return Console(stderr=True, soft_wrap=True, highlight=False)


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
