"""The saq driver: thin job functions on the domain services of one dishka container."""

from smoke.worker.metrics import worker_metrics_app
from smoke.worker.runner import RunningWorker, make_worker, running_worker

__all__ = ("RunningWorker", "make_worker", "running_worker", "worker_metrics_app")
