"""The saq driver: thin job functions on the domain services of one dishka container."""

from smoke.worker.runner import make_worker, running_worker

__all__ = ("make_worker", "running_worker")
