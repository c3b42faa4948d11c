"""What a standalone worker serves beside its jobs: Prometheus metrics, and a health that follows the worker."""

from __future__ import annotations

import httpx

from smoke.observability import JOBS
from smoke.worker import worker_metrics_app


def client_of(alive: bool) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=worker_metrics_app(lambda: alive)), base_url="http://w")


async def test_metrics_carry_the_job_counters_in_the_prometheus_format() -> None:
    JOBS.labels("provision", "ok").inc()

    async with client_of(alive=True) as client:
        response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert 'smoke_jobs_total{function="provision",outcome="ok"}' in response.text


async def test_health_is_ok_while_the_worker_runs() -> None:
    async with client_of(alive=True) as client:
        response = await client.get("/healthz")

    assert (response.status_code, response.json()) == (200, {"status": "ok"})


async def test_health_fails_once_the_worker_loop_has_ended() -> None:
    async with client_of(alive=False) as client:
        response = await client.get("/healthz")

    assert (response.status_code, response.json()) == (503, {"status": "stopped"})


async def test_any_other_path_is_not_found() -> None:
    async with client_of(alive=True) as client:
        assert (await client.get("/")).status_code == 404
