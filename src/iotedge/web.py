"""HTTP plumbing shared by both servers: JSON error bodies and fast JSON responses."""

import json
import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

__all__ = ["JSONBytes", "document_error_bodies", "error_response", "install_json_errors", "json_safe"]

_log = logging.getLogger(__name__)


def json_safe(value: Any) -> Any:
    """Replace NaN and infinities (which JSON cannot carry) by None, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


class JSONBytes(Response):
    """A JSON response rendered with the standard library, compact, NaN-free."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        """Serialise ``content``; non-finite floats become null."""
        try:
            return json.dumps(content, separators=(",", ":"), allow_nan=False).encode()
        except ValueError:
            return json.dumps(json_safe(content), separators=(",", ":")).encode()


def error_response(
    status: int, error: str, detail: Any = None, headers: dict[str, str] | None = None
) -> JSONBytes:
    """The one error body shape: ``{"error": ..., "detail": ...}`` (detail omitted if None)."""
    body: dict[str, Any] = {"error": error}
    if detail is not None:
        body["detail"] = detail
    return JSONBytes(body, status_code=status, headers=headers)


_BODY_NOT_JSON = [{"parameter": "body", "in": "body", "message": "not valid JSON text (UTF-8)"}]
"""The detail of a body that is not JSON: bad UTF-8 and bad syntax alike (same error class)."""


def _validation_detail(exc: RequestValidationError) -> list[dict[str, Any]]:
    problems = []
    for error in exc.errors():
        if error.get("type") == "json_invalid":
            problems += _BODY_NOT_JSON
            continue
        loc = [str(part) for part in error.get("loc", ())]
        where = loc[0] if loc else "request"
        name = ".".join(loc[1:]) or where
        problems.append({"parameter": name, "in": where, "message": error.get("msg", "invalid")})
    return problems


def install_json_errors(app: FastAPI) -> None:
    """Make 404/405/422 and unexpected errors answer with JSON error bodies."""

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)  # noqa: S101 - registered for that type
        if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
            # FastAPI answers 400 to a body that is not UTF-8, 422 to bad JSON syntax: one class.
            return error_response(422, "Invalid request parameters", _BODY_NOT_JSON)
        detail = exc.detail if isinstance(exc.detail, str) else "HTTP error"
        return error_response(exc.status_code, detail, headers=getattr(exc, "headers", None))

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for that type
        return error_response(422, "Invalid request parameters", _validation_detail(exc))

    async def unexpected_error(request: Request, exc: Exception) -> Response:
        _log.error("unhandled error on %s %s: %r", request.method, request.url.path, exc)
        return error_response(500, "Internal Server Error")

    document_error_bodies(app)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected_error)


_VALIDATION_SCHEMA: dict[str, Any] = {
    "title": "HTTPValidationError",
    "description": "What every 422 answer looks like: which parameters are wrong, and why.",
    "type": "object",
    "required": ["error", "detail"],
    "properties": {
        "error": {"type": "string", "example": "Invalid request parameters"},
        "detail": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["parameter", "in", "message"],
                "properties": {
                    "parameter": {"type": "string", "example": "limit"},
                    "in": {"type": "string", "example": "query"},
                    "message": {"type": "string"},
                },
            },
        },
    },
}


def document_error_bodies(app: FastAPI) -> None:
    """Make the OpenAPI schema describe our 422 body instead of FastAPI's default one."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schemas = schema.get("components", {}).get("schemas", {})
            if "HTTPValidationError" in schemas:
                schemas["HTTPValidationError"] = _VALIDATION_SCHEMA
                schemas.pop("ValidationError", None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
