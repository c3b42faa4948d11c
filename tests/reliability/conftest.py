"""The reliability suite: faults injected into the real stack, Jepsen-style figures printed and asserted.

Fixtures of the integration suite are reused through their helpers (``stack_settings``, ``running_stack``); the
simulated cloud here is a session instance of this directory's own.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import configuration as hypothesis_configuration

from tests.reliability import figures

# Hypothesis (under schemathesis) keeps its example database and constants in ./.hypothesis; not in the repository.
hypothesis_configuration.set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "smoke-reliability-hypothesis")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every row of the plan injects faults into a real stack and waits for it to converge: all of them are slow."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def row_test(request: pytest.FixtureRequest) -> str:
    """The node id of the running test, to label its figures."""
    return str(request.node.nodeid)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    if not figures.RECORDED:
        return
    terminalreporter.section("reliability figures")
    for row in figures.RECORDED:
        terminalreporter.write_line(row.line())
    if getattr(config, "cache", None) is not None:
        config.cache.set("smoke/reliability", json.loads(figures.summary()))
    if target := os.environ.get("SMOKE_RELIABILITY_JSON"):
        Path(target).write_text(figures.summary())
        terminalreporter.write_line(f"raw figures: {target}")
