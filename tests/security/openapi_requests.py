"""Requests built from the edge's OpenAPI schema, so new endpoints are covered automatically."""

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from iotedge.config import load_edge_settings
from iotedge.edge.app import create_app
from iotedge.edge.timefmt import iso_utc

__all__ = [
    "Operation",
    "body_string_paths",
    "build_body",
    "default_text",
    "offline_schema",
    "operations",
    "own_value",
    "string_slots",
]


def offline_schema() -> dict[str, Any]:
    """The edge's OpenAPI schema, from an app that is built but not started."""
    schema: dict[str, Any] = create_app(load_edge_settings({})).openapi()
    return schema


@dataclass(frozen=True)
class Operation:
    """One method on one path, with its parameters and body schema."""

    method: str
    path: str
    parameters: tuple[dict[str, Any], ...]
    body_schema: dict[str, Any] | None
    secured: bool
    documented_statuses: frozenset[str] = field(default_factory=frozenset)

    @property
    def id(self) -> str:
        """A test id like ``GET /objects/{object_id}``."""
        return f"{self.method.upper()} {self.path}"


def operations(schema: dict[str, Any]) -> list[Operation]:
    """Every operation in ``schema``."""
    found = []
    for path, item in schema["paths"].items():
        for method, op in item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            found.append(
                Operation(
                    method=method,
                    path=path,
                    parameters=tuple(op.get("parameters", ())),
                    body_schema=resolve(schema, body) if body else None,
                    secured=bool(op.get("security")),
                    documented_statuses=frozenset(op.get("responses", {})),
                )
            )
    return found


def resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow a ``$ref`` into ``components``."""
    while "$ref" in node:
        parts = node["$ref"].removeprefix("#/").split("/")
        target: Any = schema
        for part in parts:
            target = target[part]
        node = target
    return node


def _alternatives(node: dict[str, Any]) -> list[dict[str, Any]]:
    options = node.get("anyOf") or node.get("oneOf")
    if options:
        return [o for o in options if o.get("type") != "null"] or options
    return [node]


def is_string(schema: dict[str, Any], node: dict[str, Any]) -> bool:
    """Whether a parameter takes free text (not an enum)."""
    return any(resolve(schema, o).get("type") == "string" and "enum" not in o for o in _alternatives(node))


def string_slots(schema: dict[str, Any], op: Operation) -> list[str]:
    """Names of the free-text path and query parameters of ``op``."""
    return [
        p["name"]
        for p in op.parameters
        if p.get("in") in {"path", "query"} and is_string(schema, p.get("schema", {}))
    ]


def own_value(schema: dict[str, Any], param: dict[str, Any], own_client: str, own_object: str) -> Any:
    """A valid value of a parameter, naming the caller's own client or object where it is an id."""
    node = resolve(schema, _alternatives(param.get("schema", {}))[0])
    if "enum" in node:
        return node["enum"][0]
    kind = node.get("type")
    if kind == "integer":
        return node.get("minimum", 1)
    if kind == "number":
        return node.get("maximum", 60)
    if kind == "boolean":
        return "false"
    return own_client if "client" in param["name"] else own_object


def build_body(
    schema: dict[str, Any],
    node: dict[str, Any],
    text: str | Callable[[tuple[str, ...]], str],
    depth: int = 0,
    at: tuple[str, ...] = (),
) -> Any:
    """A JSON value for ``node``: every free-text field is ``text`` (or ``text(field path)``)."""
    node = resolve(schema, _alternatives(resolve(schema, node))[0])
    if depth > 6:
        return None
    if "enum" in node:
        return node["enum"][0]
    kind = node.get("type")
    if kind == "object" or "properties" in node:
        return {
            name: build_body(schema, sub, text, depth + 1, (*at, name))
            for name, sub in node.get("properties", {}).items()
        }
    if kind == "array":
        return [build_body(schema, node.get("items", {}), text, depth + 1, (*at, "[]"))]
    if kind == "integer":
        return node.get("minimum", 1)
    if kind == "number":
        return 1.0
    if kind == "boolean":
        return False
    return text(at) if callable(text) else text


def body_string_paths(schema: dict[str, Any], node: dict[str, Any]) -> list[tuple[str, ...]]:
    """The paths of every free-text field ``build_body`` fills."""
    paths: list[tuple[str, ...]] = []

    def record(path: tuple[str, ...]) -> str:
        paths.append(path)
        return ""

    build_body(schema, node, record)
    return paths


def default_text(path: tuple[str, ...], own_client: str, own_object: str, now: float) -> str:
    """A plausible own value for a body field, guessed from its name."""
    name = path[-1].lower() if path else ""
    if name in {"from", "start", "since"}:
        return iso_utc(now - 3600)
    if name in {"to", "end", "until"}:
        return iso_utc(now)
    return own_client if "client" in name else own_object


def walk_strings(value: Any) -> Iterator[str]:
    """Every string (keys too) inside a JSON value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from walk_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk_strings(item)
