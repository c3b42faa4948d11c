"""Liveness and readiness, without authentication."""

from __future__ import annotations

from litestar import Response, get
from litestar.openapi import ResponseSpec
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from smoke.api.di import FromDishka, inject
from smoke.api.schemas import ReadinessRead
from smoke.domain.ports import ReadinessProbe

__all__ = ("healthz", "metrics", "readyz")


@get("/healthz", summary="Liveness", tags=["Health"], include_in_schema=True)
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@get(
    "/readyz",
    summary="Readiness",
    tags=["Health"],
    responses={503: ResponseSpec(ReadinessRead, description="Database or queue unreachable", generate_examples=False)},
)
@inject
async def readyz(probe: FromDishka[ReadinessProbe]) -> Response[ReadinessRead]:
    """The database and the queue can be reached; 503 naming what cannot."""
    unready = await probe.unready()
    if unready:
        return Response(ReadinessRead("unavailable", unready), status_code=HTTP_503_SERVICE_UNAVAILABLE)
    return Response(ReadinessRead("ok", []), status_code=HTTP_200_OK)


@get("/metrics", include_in_schema=False, media_type=CONTENT_TYPE_LATEST)
async def metrics() -> bytes:
    """Prometheus metrics of this process: requests, chat streams (API); jobs and provisioning time (worker)."""
    return generate_latest()
