"""Render docs/api.md from the OpenAPI schemas of the simulator and the edge apps."""

from typing import Any

from tools.docs_gen.markdown import GENERATED_NOTE, anchor, code, table

__all__ = ["render_api"]

_METHODS = ("get", "post", "put", "patch", "delete")

# FastAPI documents validation errors with its own body shape; both apps answer with ours.
_FASTAPI_VALIDATION = {"HTTPValidationError", "ValidationError"}

_INTRO = """\
# API reference

Every endpoint of the two servers, generated from their OpenAPI schemas (the same schemas
that `/docs` and `/openapi.json` serve). For a guided tour with real output, read
[guide.md](guide.md); for the settings, [configuration.md](configuration.md).

- [Conventions](#conventions)
- [Device API simulator (`iotedge sim`)](#device-api-simulator-iotedge-sim)
- [Edge API (`iotedge edge`)](#edge-api-iotedge-edge)
- [Schemas](#schemas)

## Conventions

**JSON everywhere.** Every response, errors included, is JSON. Timestamps of the simulator
follow the course: ISO 8601 without an offset, meaning UTC (`--timestamp-offset` adds
`+00:00`). The edge writes ISO 8601 with the offset, and series timestamps in epoch
milliseconds (Grafana's unit).

**Error bodies.** `{"error": "<short reason>"}`, plus `"detail"` when there is more to say.
The device API's 404 bodies are the course's: `{"error": "Device not found"}` and
`{"error": "No devices found for this client"}`. A bad parameter gives 422 with the
parameters named:

```json
{"error": "Invalid request parameters",
 "detail": [{"parameter": "limit", "in": "query", "message": "Input should be greater than or equal to 1"}]}
```

(The OpenAPI schemas still name FastAPI's `HTTPValidationError` for 422; the body really
sent is the one above.) An unexpected failure is a 500 with `{"error": "Internal Server
Error"}` and no stack trace.

**Keys (edge only).** Every edge endpoint marked *key* needs the header `x-api-key` (`GET /`
only checks a key when one is sent). A missing, unknown, revoked or expired key gets
**401** with exactly `{"error": "Unauthorized"}` (the course's body); the reason goes to
the edge's log, never to the caller. A client key sees only its client's objects; the
cross-client key (client `*`) reads every client. Anything outside the key's scope answers
**exactly like something that does not exist**: 404 `{"error": "Object not found"}` or
`{"error": "Client not found"}`, so a key cannot even learn which ids exist elsewhere.
List endpoints and Grafana queries simply leave out what the key may not see.

**Limits (edge only).** A key that spends its request budget (`--rate-limit`,
`--rate-burst`), or an address with too many failed keys (`--auth-failures`), gets **429**
`{"error": "Too Many Requests"}` with `Retry-After` in seconds. A URL longer than
`--max-url` gets 414 and a body larger than `--max-body` 413. Every answer carries security
headers. Details, and HTTPS, in [security.md](security.md).

**Time windows (edge).** Statistics and series cover `window` (a duration: `90s`, `15m`,
`1h`, `7d`; default `1h`) ending now, or `from`/`to`, each an epoch time in seconds or
milliseconds (Grafana's `${__from}`/`${__to}`) or ISO 8601 (naive means UTC). `from`/`to`
win over `window`; a window spans at most 31 days and `from` must be before `to`.

**Stale data (edge).** The edge answers from its own store and never calls the device API
on the request path. When the device API is failing, or the newest reading is older than
`--stale-after`, responses carry `"stale": true` (and `age_seconds`); an object with no
reading at all yet gives 503 `{"error": "No data yet"}` with `Retry-After`.
"""

_APPS = {
    "sim": (
        "Device API simulator (`iotedge sim`)",
        "The course's device API (paths and JSON shapes of its public API), deterministic, with "
        "injected anomalies and faults. No key. The `/_sim/*` endpoints are the simulator's own: "
        "ground truth and fault control for tests and demos. Default address "
        "`http://127.0.0.1:8000`.",
    ),
    "edge": (
        "Edge API (`iotedge edge`)",
        "Statistics, series and anomalies computed from the edge's own store. Default address "
        "`http://127.0.0.1:5000`; Prometheus metrics are on a separate port (8001), described "
        "in [metrics.md](metrics.md). The Grafana data source endpoints (`POST /search`, "
        "`/query`, ...) take targets whose grammar, with the plugins that send them, is in "
        "[grafana.md](grafana.md).",
    ),
}

# Meanings of response fields whose model carries no description (looked up by name).
_GLOSSARY = {
    "edge_id": "Name of the edge that answered (`--edge-id`, default the host name).",
    "stale": "True when the device API is failing or the newest reading is older than `--stale-after`.",
    "age_seconds": "Seconds since the newest reading of the object.",
    "last_reading_at": "Time of the newest stored reading (ISO 8601, UTC).",
    "count": "Number of readings (or of items in the list).",
    "average": "Mean of the readings in the window.",
    "min": "Smallest reading in the window (bucket).",
    "max": "Largest reading in the window (bucket).",
    "stddev": "Population standard deviation of the readings in the window.",
    "last": "Newest reading in the window.",
    "metric": "Metric name: temperature, humidity, activity_level or battery_level.",
    "client": "The client (tenant) the object belongs to.",
    "client_id": "The client (tenant).",
    "object_id": "The object (device) id.",
    "type": "Device type: temperature_sensor, humidity_sensor or activity_tracker.",
    "window": "The time window covered.",
    "timestamp": "Time of the reading.",
    "seconds": "Length of the window in seconds.",
    "from": "Start of the window (ISO 8601, UTC).",
    "to": "End of the window (ISO 8601, UTC).",
    "rule": "Rule that fired: `<metric>_high`, `<metric>_low`, `zscore`, `stuck` or `offline`.",
    "severity": "info, warning or critical.",
    "state": "`open` while the event lasts, then `resolved` (the `state` filter calls it `closed`).",
    "value": "The reading that opened the event.",
    "last_value": "The latest reading of the event (the one that closed it, once resolved).",
    "message": "The event in words, e.g. `device_2 humidity 91 above 80`.",
    "event_id": "Id of the anomaly event.",
    "id": "The object (device) id.",
    "primary_metric": "The metric the course's statistics and history are about.",
    "latest": "Newest value per metric.",
    "points": "The series, ascending in time.",
    "step_seconds": "Bucket length; null for raw readings.",
    "open": "Events still open.",
    "total": "Events, open or resolved.",
    "threshold": "The limit the rule compares with.",
    "started_at": "When the event started (ISO 8601, UTC).",
    "ended_at": "When the event ended; null while it is open.",
    "started_at_ms": "`started_at` in epoch milliseconds.",
    "ended_at_ms": "`ended_at` in epoch milliseconds.",
    "metrics": "Per metric, keyed by metric name.",
    "history": "Points of the primary metric, newest first, one minute apart.",
    "error": "Short reason.",
    "detail": "More about the error, when there is more.",
}


# Meanings of parameters that carry no description.
_PARAMS = {
    "object_id": "The object (device) id, e.g. `device_1`.",
    "client": "The client id, e.g. `client_1`.",
    "client_id": "Only this client (it must be visible to the key).",
    "rule": "Only events of this rule, e.g. `temperature_high`.",
    "state": "Open events, resolved ones (`closed`), or both.",
    "limit": "At most this many items.",
    "metric": "Only this metric.",
    "since": "Start (epoch seconds or ISO 8601); default one hour ago.",
    "until": "End (epoch seconds or ISO 8601); default now.",
}


def _sentences(meaning: str, constraints: str) -> str:
    """A meaning and its constraints as sentences: ``Number of points. Allowed: 1..1000.``."""
    parts = [meaning.rstrip(". ") + "." if meaning else ""]
    if constraints:
        parts.append(f"Allowed: {constraints}.")
    return " ".join(part for part in parts if part)


def _text(docstring: str) -> str:
    """Docstring markup (reStructuredText double backticks) as Markdown."""
    return docstring.replace("``", "`")


def _schema_link(app: str, name: str) -> str:
    if name in _FASTAPI_VALIDATION:
        return "[validation error](#conventions)"
    return f"[`{name}`](#{anchor(f'{name} ({app})')})"


def _type(app: str, schema: dict[str, Any]) -> str:
    """A short readable type for a JSON schema."""
    if "$ref" in schema:
        return _schema_link(app, schema["$ref"].rsplit("/", 1)[-1])
    if "anyOf" in schema:
        parts = [_type(app, option) for option in schema["anyOf"]]
        return " or ".join(dict.fromkeys(parts))
    if "enum" in schema:
        return "one of " + ", ".join(code(str(value)) for value in schema["enum"])
    kind = schema.get("type")
    if kind == "array":
        return "list of " + _type(app, schema.get("items", {}))
    if kind == "object":
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict) and extra:
            return "map of " + _type(app, extra)
        return "object"
    return str(kind or "JSON")


def _constraints(schema: dict[str, Any]) -> str:
    """Bounds and lengths of a (possibly optional) scalar schema, e.g. ``1..1000``."""
    options = [s for s in schema.get("anyOf", [schema]) if s.get("type") != "null"]
    target = options[0] if options else schema
    words = []
    low = target.get("minimum", target.get("exclusiveMinimum"))
    high = target.get("maximum", target.get("exclusiveMaximum"))
    if low is not None or high is not None:
        left = "" if low is None else f"{low} {'<' if 'exclusiveMinimum' in target else '<='} "
        right = "" if high is None else f" {'<' if 'exclusiveMaximum' in target else '<='} {high}"
        words.append(f"{left}value{right}")
    if "minLength" in target or "maxLength" in target:
        words.append(f"{target.get('minLength', 0)}..{target.get('maxLength', '')} characters")
    return ", ".join(words)


def _non_null(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional parameter's schema without its ``null`` alternative."""
    options = [s for s in schema.get("anyOf", []) if s.get("type") != "null"]
    return options[0] if len(options) == 1 else schema


def _parameters(app: str, operation: dict[str, Any]) -> list[str]:
    rows = []
    for param in operation.get("parameters", []):
        schema = param.get("schema", {})
        default = schema.get("default")
        meaning = _text(param.get("description") or _PARAMS.get(param["name"], ""))
        rows.append(
            [
                code(param["name"]),
                param["in"],
                _type(app, _non_null(schema)),
                "yes" if param.get("required") else "no",
                "" if default is None else code(str(default)),
                _sentences(meaning, _constraints(schema)),
            ]
        )
    if not rows:
        return []
    header = ["Parameter", "In", "Type", "Required", "Default", "Meaning"]
    return ["**Parameters**", "", table(header, rows), ""]


def _body_type(app: str, response: dict[str, Any]) -> str:
    content = response.get("content", {}).get("application/json")
    if not content:
        return ""
    return _type(app, content.get("schema", {}))


def _responses(app: str, operation: dict[str, Any]) -> list[str]:
    responses = dict(operation.get("responses", {}))
    rows = []
    if operation.get("security"):
        rows.append(["401", code('{"error": "Unauthorized"}'), "Missing, unknown, revoked or expired key."])
        rows.append(["429", "[error body](#conventions)", "Request budget spent; see `Retry-After`."])
        responses = {status: r for status, r in responses.items() if status not in ("401", "429")}
    for status, response in sorted(responses.items()):
        meaning = response.get("description", "").replace("Successful Response", "OK.")
        body = _body_type(app, response)
        if status == "422":
            body, meaning = "[error body](#conventions)", "A parameter is invalid; `detail` names it."
        elif status.startswith(("4", "5")) and not body:
            body = "[error body](#conventions)"
        rows.append([status, body, meaning])
    rows.sort(key=lambda row: row[0])
    return ["**Responses**", "", table(["Status", "Body", "Meaning"], rows), ""]


def _request_body(app: str, operation: dict[str, Any]) -> list[str]:
    body = operation.get("requestBody")
    if not body:
        return []
    schema = body.get("content", {}).get("application/json", {}).get("schema", {})
    return [f"**Body** (JSON): {_type(app, schema)}", ""]


def _operation(app: str, method: str, path: str, operation: dict[str, Any]) -> list[str]:
    # FastAPI's automatic summary is the function name; the docstring says more.
    what = operation.get("description") or operation.get("summary", "")
    lines = [f"### {method.upper()} {path}", "", " ".join(_text(what).split()), ""]
    auth = "key (`x-api-key`), scoped to the key's client" if operation.get("security") else "none"
    lines += [f"Auth: {auth}.", ""]
    lines += _parameters(app, operation)
    lines += _request_body(app, operation)
    lines += _responses(app, operation)
    return lines


def _schema(app: str, name: str, schema: dict[str, Any]) -> list[str]:
    lines = [f"#### {name} ({app})", ""]
    if schema.get("description"):
        lines += [" ".join(_text(schema["description"]).split()), ""]
    required = set(schema.get("required", []))
    rows = []
    for field, prop in schema.get("properties", {}).items():
        meaning = _text(prop.get("description") or _GLOSSARY.get(field, ""))
        constraints = _constraints(prop)
        rows.append(
            [
                code(field),
                _type(app, prop),
                "yes" if field in required else "no",
                _sentences(meaning, constraints),
            ]
        )
    if rows:
        lines += [table(["Field", "Type", "Always present", "Meaning"], rows), ""]
    return lines


def _app_section(app: str, spec: dict[str, Any]) -> list[str]:
    title, intro = _APPS[app]
    lines = [f"## {title}", "", intro, ""]
    index = []
    body: list[str] = []
    for path, item in spec.get("paths", {}).items():
        for method in _METHODS:
            if method in item:
                heading = f"{method.upper()} {path}"
                operation = item[method]
                what = _text(operation.get("description") or operation.get("summary", "")).split("\n")[0]
                auth = "key" if operation.get("security") else "none"
                index.append([f"[{code(heading)}](#{anchor(heading)})", auth, what])
                body += _operation(app, method, path, operation)
    lines += [table(["Endpoint", "Auth", "What it does"], index), "", *body]
    return lines


def _schemas_section(specs: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["## Schemas", ""]
    for app, spec in specs.items():
        for name, schema in sorted(spec.get("components", {}).get("schemas", {}).items()):
            if name not in _FASTAPI_VALIDATION:
                lines += _schema(app, name, schema)
    return lines


def render_api(sim_spec: dict[str, Any], edge_spec: dict[str, Any]) -> str:
    """The whole of docs/api.md for the two OpenAPI schemas."""
    specs = {"sim": sim_spec, "edge": edge_spec}
    lines = [GENERATED_NOTE, "", _INTRO.rstrip("\n"), ""]
    for app, spec in specs.items():
        lines += _app_section(app, spec)
    lines += _schemas_section(specs)
    return "\n".join(lines).rstrip("\n") + "\n"
