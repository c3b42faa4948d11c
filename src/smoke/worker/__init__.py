"""The saq driver: thin job functions, each run in its own dishka REQUEST scope."""

from smoke.worker.settings import make_worker, running_worker

__all__ = ("make_worker", "running_worker")
