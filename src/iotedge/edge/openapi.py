"""The answers any edge operation may give besides its own, written into the OpenAPI schema.

Size limits (413, 414, 431) are enforced before routing, so they apply to every
operation; 401 and 429 to every operation that reads a key. FastAPI cannot know either,
so they are added to the generated schema here, with the one JSON error body they carry.
"""

from typing import Any

from fastapi import FastAPI

__all__ = ["ERROR_SCHEMA", "document_common_answers"]

ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "description": "Every error answer: a short reason, and sometimes what was wrong.",
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}, "detail": {}},
}

_ERROR_BODY = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}


def _answer(description: str, **extra: Any) -> dict[str, Any]:
    return {"description": description, "content": _ERROR_BODY, **extra}


_ANY_OPERATION = {
    "413": _answer("Request body larger than the edge's --max-body."),
    "414": _answer("URL (path and query) longer than the edge's --max-url."),
    "431": _answer("Request headers larger than the edge accepts."),
}
_KEYED_OPERATION = {
    "401": _answer(
        'Missing, unknown, revoked or expired key: exactly {"error": "Unauthorized"}.',
    ),
    "429": _answer(
        "The key's request budget is spent, or this address sent too many bad keys.",
        headers={
            "Retry-After": {
                "description": "Seconds until a request may succeed.",
                "schema": {"type": "integer", "minimum": 1},
            }
        },
    ),
}


def document_common_answers(app: FastAPI) -> None:
    """Make ``app.openapi()`` list 413/414/431 on every operation and 401/429 on keyed ones."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
            for item in schema.get("paths", {}).values():
                for operation in item.values():
                    responses = operation.setdefault("responses", {})
                    common = {**_ANY_OPERATION, **(_KEYED_OPERATION if operation.get("security") else {})}
                    for status, answer in common.items():
                        responses.setdefault(status, answer)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
