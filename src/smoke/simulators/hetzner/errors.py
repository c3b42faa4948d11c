"""The Hetzner API error envelope: ``{"error": {"code", "message", "details"}}`` with the status of its code."""

from __future__ import annotations

from collections.abc import Mapping

from smoke.simulators.asgi import HttpError, JsonResponse

__all__ = ("api_error", "invalid_field", "invalid_input", "locked", "not_found")


def api_error(
    status: int, code: str, message: str, details: object = None, *, headers: Mapping[str, str] | None = None
) -> HttpError:
    body = {"error": {"code": code, "message": message, "details": details}}
    return HttpError(JsonResponse(status, body, headers or {}))


def invalid_field(field: str, *reasons: str) -> HttpError:
    """422 ``invalid_input`` for a field that fails validation, worded as the API does.

    The message is ``invalid input in field 'name'``; the reasons are in ``details.fields[].messages`` (hcloud-go
    prints them as ``[name => [Name must be a valid hostname.]]``).
    """
    details = {"fields": [{"name": field, "messages": list(reasons)}]}
    return api_error(422, "invalid_input", f"invalid input in field '{field}'", details)


def invalid_input(field: str, message: str) -> HttpError:
    """422 ``invalid_input`` whose message says what is wrong (``location 'xyz' not found``); details name the field."""
    return api_error(422, "invalid_input", message, {"fields": [{"name": field, "messages": [message]}]})


def not_found(resource: str, id_: int) -> HttpError:
    return api_error(404, "not_found", f"{resource} with ID '{id_}' not found")


def locked(resource: str) -> HttpError:
    """423 ``locked``: another action is running on ``resource`` (the API's wording, seen in hcloud issues)."""
    return api_error(423, "locked", f"cannot perform operation because {resource} is locked")
