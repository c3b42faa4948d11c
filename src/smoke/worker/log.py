"""A job that fails for an expected reason is one line of the log, not saq's traceback."""

from __future__ import annotations

import logging
from typing import Final

from saq import Job

from smoke.domain.errors import CloudError, SmokeError

__all__ = ("JOB_FAILURES_IN_ONE_LINE", "JobFailuresInOneLine")


class JobFailuresInOneLine(logging.Filter):
    """saq's ``Error processing job`` with a traceback, for a job that raised a ``SmokeError``, as one line.

    A ``SmokeError`` is an expected failure (the database or the queue unavailable, the cloud refusing): the line
    names the job, the attempt, whether it is retried and why. Any other exception keeps its traceback: it is a bug.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != "Error processing job %s":
            return True
        job = record.args[0] if isinstance(record.args, tuple) and record.args else None
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(job, Job) and isinstance(error, SmokeError):
            why = error.reason if isinstance(error, CloudError) else f"{type(error).__name__}: {error}"
            record.msg = "job %s failed (attempt %d of %d, %s): %s"
            record.args = (job.key, job.attempts, job.retries, "retried" if job.retryable else "not retried", why)
            record.exc_info, record.exc_text = None, None
            if job.retryable:
                record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


JOB_FAILURES_IN_ONE_LINE: Final = JobFailuresInOneLine()
"""The one filter every worker installs on saq's logger (installing it again changes nothing)."""
