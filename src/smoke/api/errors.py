"""Error responses in the FastAPI shapes existing CI clients parse (docs/api.md, "Errors")."""

from __future__ import annotations

import ast
import logging
import re
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.params import ParameterKwarg
from litestar.status_codes import (
    HTTP_404_NOT_FOUND,
    HTTP_409_CONFLICT,
    HTTP_422_UNPROCESSABLE_ENTITY,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_502_BAD_GATEWAY,
    HTTP_503_SERVICE_UNAVAILABLE,
)
from litestar.types import ExceptionHandlersMap

from smoke.api.bodies import UndecodableBody
from smoke.api.schemas import PATTERN_MESSAGES
from smoke.domain.errors import (
    AgentUnavailable,
    IdempotencyKeyReused,
    InstanceNotFound,
    InvalidState,
    LiveInstanceCapReached,
    StorageUnavailable,
    UnknownCatalogEntry,
)

__all__ = ("exception_handlers", "validation_error")

logger = logging.getLogger("smoke.api")

_FIELD = re.compile(r"Object (missing required|contains unknown) field `(.*)`\Z", re.DOTALL)
_PATTERN_MISMATCH = re.compile(r"Expected `str` matching regex ('.*'|\".*\")\Z", re.DOTALL)
_MISSING_PARAMETER = re.compile(r"Missing required (\w+) parameter '([^']+)'")
_PATH_TOKEN = re.compile(r"\[\d+\]|[^.\[\]]+")


def validation_error(loc: list[str | int], msg: str, type_: str) -> Response[Any]:
    return Response({"detail": [{"loc": loc, "msg": msg, "type": type_}]}, status_code=HTTP_422_UNPROCESSABLE_ENTITY)


def _detail(detail: str, status_code: int, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response({"detail": detail}, status_code=status_code, headers=headers)


def _msg_and_type(msg: str) -> tuple[str, str]:
    """The FastAPI ``msg`` and ``type`` of a msgspec validation message; a pattern's ``msg`` says what it refuses."""
    if match := _PATTERN_MISMATCH.match(msg):
        pattern = ast.literal_eval(match[1])
        return PATTERN_MESSAGES.get(pattern, f"String should match pattern '{pattern}'"), "string_pattern_mismatch"
    return msg, "missing" if msg == "Field required" else _type_of(msg)


def _type_of(msg: str) -> str:
    if msg.startswith("Object missing required field"):
        return "missing"
    if msg.startswith("Object contains unknown field"):
        return "extra_forbidden"
    if "of length" in msg:
        return "string_too_long" if "<=" in msg else "string_too_short"
    if re.search(r"Expected `\w+` (<=|<)", msg):
        return "less_than_equal"
    if re.search(r"Expected `\w+` (>=|>)", msg):
        return "greater_than_equal"
    return "type_error" if msg.startswith("Expected `") else "value_error"


def _alias(request: Request[Any, Any, Any], name: str) -> str:
    """The public name of a parameter (``X-Token``), from its Python name (``x_token``)."""
    field = request.route_handler.parsed_fn_signature.parameters.get(name)
    kwarg = getattr(field, "kwarg_definition", None)
    return kwarg.name if isinstance(kwarg, ParameterKwarg) and kwarg.name else name


def _fastapi_detail(request: Request[Any, Any, Any], error: ValidationException) -> list[dict[str, Any]]:
    items = []
    for extra in error.extra if isinstance(error.extra, list) else []:
        source = extra.get("source")
        source = getattr(source, "value", source) or "body"
        msg, key = str(extra.get("message", "")), extra.get("key")
        if source == "body":
            parts: list[str | int] = []
            if key not in (None, "data"):
                parts = [int(t[1:-1]) if t.startswith("[") else t for t in _PATH_TOKEN.findall(str(key))]
            if match := _FIELD.match(msg):
                parts.append(match.group(2))
            if key == "data" and msg == "'data'":
                msg = "Field required"
            loc: list[str | int] = ["body", *parts]
        else:
            loc = [source, _alias(request, key) if key else ""]
        msg, type_ = _msg_and_type(msg)
        items.append({"loc": loc, "msg": msg, "type": type_})
    if not items:
        if match := _MISSING_PARAMETER.match(error.detail or ""):
            items.append({"loc": [match[1], match[2]], "msg": "Field required", "type": "missing"})
        else:
            items.append({"loc": ["body"], "msg": error.detail, "type": "value_error"})
    return items


def _on_validation(request: Request[Any, Any, Any], error: ValidationException) -> Response[Any]:
    return Response({"detail": _fastapi_detail(request, error)}, status_code=HTTP_422_UNPROCESSABLE_ENTITY)


def _on_http(_: Request[Any, Any, Any], error: HTTPException) -> Response[Any]:
    return _detail(str(error.detail), error.status_code, error.headers)


def _on_undecodable_body(_: Request[Any, Any, Any], error: UndecodableBody) -> Response[Any]:
    return validation_error(["body"], f"Invalid JSON: {error}", "json_invalid")


def _on_reused_key(_: Request[Any, Any, Any], error: IdempotencyKeyReused) -> Response[Any]:
    return validation_error(["body", "idempotency_key"], str(error), "idempotency_key_reused")


def _on_unknown_catalog_entry(_: Request[Any, Any, Any], error: UnknownCatalogEntry) -> Response[Any]:
    return validation_error(["body", error.field], str(error), "unknown_catalog_id")


def _on_not_found(_: Request[Any, Any, Any], error: InstanceNotFound) -> Response[Any]:
    return _detail("Instance not found", HTTP_404_NOT_FOUND)


def _on_conflict(_: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    return _detail(str(error), HTTP_409_CONFLICT)


def _on_agent_unavailable(_: Request[Any, Any, Any], error: AgentUnavailable) -> Response[Any]:
    return _detail(str(error), HTTP_502_BAD_GATEWAY)


def _on_storage_unavailable(_: Request[Any, Any, Any], error: StorageUnavailable) -> Response[Any]:
    logger.warning("storage unavailable: %s", error)
    return _detail("Database or queue unavailable, retry later", HTTP_503_SERVICE_UNAVAILABLE, {"Retry-After": "1"})


def _on_unexpected(request: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=error)
    return _detail("Internal Server Error", HTTP_500_INTERNAL_SERVER_ERROR)


exception_handlers: ExceptionHandlersMap = {
    ValidationException: _on_validation,
    HTTPException: _on_http,
    UndecodableBody: _on_undecodable_body,
    IdempotencyKeyReused: _on_reused_key,
    UnknownCatalogEntry: _on_unknown_catalog_entry,
    InstanceNotFound: _on_not_found,
    InvalidState: _on_conflict,
    LiveInstanceCapReached: _on_conflict,
    AgentUnavailable: _on_agent_unavailable,
    StorageUnavailable: _on_storage_unavailable,
    Exception: _on_unexpected,
}
