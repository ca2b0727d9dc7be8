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


def _link(path: str, method: str, **parameters: str) -> dict[str, Any]:
    ref = "#/paths/" + path.replace("~", "~0").replace("/", "~1") + "/" + method
    return {"operationRef": ref, "parameters": parameters}


_FIRST_OBJECT = "$response.body#/objects/0/id"
_FIRST_CLIENT = "$response.body#/objects/0/client"
_LINKS: dict[tuple[str, str], dict[str, dict[str, Any]]] = {
    ("/objects", "get"): {
        "Object": _link("/objects/{object_id}", "get", object_id=_FIRST_OBJECT),
        "ObjectReadings": _link("/objects/{object_id}/readings", "get", object_id=_FIRST_OBJECT),
        "ProcessedData": _link("/processed_data", "get", object_id=_FIRST_OBJECT),
        "ClientStatistics": _link("/client_statistics", "get", client_id=_FIRST_CLIENT),
        "ClientAnomalies": _link("/anomalies", "get", client_id=_FIRST_CLIENT),
    },
    ("/objects/{object_id}", "get"): {
        "Readings": _link("/objects/{object_id}/readings", "get", object_id="$response.body#/id"),
    },
}
"""OpenAPI links: the ids one answer gives and the operations that take them (stateful tests)."""


def document_common_answers(app: FastAPI) -> None:
    """Make ``app.openapi()`` list 413/414/431 on every operation and 401/429 on keyed ones.

    It also adds the links between operations (:data:`_LINKS`) to their 200 answers.
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
            for (path, method), links in _LINKS.items():
                answer = schema["paths"][path][method]["responses"]["200"]
                answer["links"] = links
            for item in schema.get("paths", {}).values():
                for operation in item.values():
                    responses = operation.setdefault("responses", {})
                    common = {**_ANY_OPERATION, **(_KEYED_OPERATION if operation.get("security") else {})}
                    for status, answer in common.items():
                        responses.setdefault(status, answer)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
