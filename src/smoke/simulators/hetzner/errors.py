"""The Hetzner API error envelope: ``{"error": {"code", "message", "details"}}`` with the status of its code."""

from __future__ import annotations

from collections.abc import Mapping

from smoke.simulators.asgi import HttpError, JsonResponse

__all__ = ("api_error", "invalid_input", "not_found")


def api_error(
    status: int, code: str, message: str, details: object = None, *, headers: Mapping[str, str] | None = None
) -> HttpError:
    body = {"error": {"code": code, "message": message, "details": details}}
    return HttpError(JsonResponse(status, body, headers or {}))


def invalid_input(field: str, message: str) -> HttpError:
    """422 ``invalid_input`` naming the offending field in ``details.fields``, as the API does."""
    return api_error(422, "invalid_input", message, {"fields": [{"name": field, "messages": [message]}]})


def not_found(resource: str, id_: int) -> HttpError:
    return api_error(404, "not_found", f"{resource} with ID '{id_}' not found")
