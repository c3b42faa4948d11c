"""The worker's log: a job failing for an expected reason (a ``SmokeError``) is one line, anything else a traceback.

Each test logs what saq's worker logs when a job raises (``logger.exception("Error processing job %s", job)``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from saq import Job

from smoke.domain.errors import CloudTransientError, StorageUnavailable
from smoke.observability import configure_logging
from smoke.worker.log import JOB_FAILURES_IN_ONE_LINE


@pytest.fixture
def worker_log() -> Iterator[None]:
    """As in a worker process: logging configured by the entry point (in the test), the filter by the worker."""
    root, saq = logging.getLogger(), logging.getLogger("saq")
    handlers, level = root.handlers[:], root.level
    saq.addFilter(JOB_FAILURES_IN_ONE_LINE)
    yield
    saq.removeFilter(JOB_FAILURES_IN_ONE_LINE)
    root.handlers[:], root.level = handlers, level


def a_job(attempts: int, retries: int = 5) -> Job:
    return Job("provision", key="provision:3f2a", retries=retries, attempts=attempts)


@pytest.mark.parametrize(
    ("job", "error", "line"),
    [
        (
            a_job(1),
            StorageUnavailable("queue unavailable: OSError"),
            "[warning  ] job provision:3f2a failed (attempt 1 of 5, retried): StorageUnavailable: queue unavailable: "
            "OSError",
        ),
        (
            a_job(5),
            CloudTransientError("rate_limit_exceeded", "limit reached", provider="Hetzner"),
            "[error    ] job provision:3f2a failed (attempt 5 of 5, not retried): Hetzner: rate_limit_exceeded: "
            "limit reached",
        ),
    ],
)
def test_a_job_failing_with_a_smoke_error_is_one_line_naming_the_job_and_the_error(
    worker_log: None, capsys: pytest.CaptureFixture[str], job: Job, error: Exception, line: str
) -> None:
    configure_logging("INFO", "console")

    try:
        raise error
    except Exception:
        logging.getLogger("saq").exception("Error processing job %s", job)

    output = capsys.readouterr().err
    assert output.count("\n") == 1
    assert line in output


def test_a_job_failing_with_anything_else_keeps_its_traceback(
    worker_log: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", "console")

    try:
        raise KeyError("a bug")
    except KeyError:
        logging.getLogger("saq").exception("Error processing job %s", a_job(1))  # what saq's worker logs

    assert "Traceback (most recent call last):" in capsys.readouterr().err
