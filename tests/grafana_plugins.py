"""The requests Grafana's data source plugins send, reproduced from their contracts (no Grafana).

Simple JSON and simPod JSON forward Grafana's whole query request (with its internal
fields) to ``POST /query``; Infinity GETs a URL after Grafana interpolated the
dashboard variables. See docs/grafana.md for the contracts.
"""

import re
from datetime import UTC, datetime
from typing import Any

import httpx

from tests.procs import loopback_http

__all__ = [
    "SIMPLE_JSON",
    "SIMPOD_JSON",
    "interpolate",
    "iso_ms",
    "query_body",
    "select",
    "time_range",
]

SIMPLE_JSON = "grafana-simple-json-datasource"
SIMPOD_JSON = "simpod-json-datasource"
INFINITY = "yesoreyeram-infinity-datasource"

_VARIABLE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)|\[\[(\w+)\]\]")
_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|\[\]{}/]")


def iso_ms(ts: float) -> str:
    """Grafana's range bound: ISO 8601 UTC with milliseconds and ``Z``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ts * 1000) % 1000:03d}Z"


def time_range(since: float, until: float) -> dict[str, Any]:
    """``range`` as Grafana sends it (absolute bounds plus the raw relative text)."""
    return {"from": iso_ms(since), "to": iso_ms(until), "raw": {"from": "now-5m", "to": "now"}}


def _format(values: list[str], fmt: str) -> str:
    if fmt == "regex":
        escaped = [_REGEX_SPECIAL.sub(lambda m: "\\" + m.group(0), v) for v in values]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
    if fmt == "glob":
        return values[0] if len(values) == 1 else "{" + ",".join(values) + "}"
    if fmt == "pipe":
        return "|".join(values)
    return ",".join(values)  # csv, and Grafana's default for multi-value variables


def interpolate(
    text: str, variables: dict[str, list[str]], *, fmt: str = "csv", builtins: dict[str, str] | None = None
) -> str:
    """Grafana's template service: ``$var``, ``${var}``, ``${var:fmt}``, ``[[var]]``.

    ``fmt`` is the plugin's default format (Simple JSON and simPod use regex for targets);
    an explicit ``${var:csv}`` wins. Built-ins (``__from``, ``__to``, ``__interval_ms``) are plain.
    """
    fixed = builtins or {}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3) or match.group(4)
        if name in fixed:
            return fixed[name]
        if name not in variables:
            return match.group(0)
        return _format(variables[name], match.group(2) or fmt)

    return _VARIABLE.sub(replace, text)


_INTERNALS: dict[str, Any] = {
    "app": "dashboard",
    "requestId": "SQR101",
    "timezone": "browser",
    "panelId": 7,
    "panelPluginId": "timeseries",
    "dashboardUID": "iot-fleet",
    "dashboardId": 3,
    "cacheTimeout": None,
    "queryCachingTTL": None,
    "liveStreaming": False,
    "format": "json",
}


def query_body(
    plugin: str,
    targets: list[dict[str, Any]],
    since: float,
    until: float,
    *,
    interval_ms: int = 1000,
    max_points: int = 600,
    filters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The ``POST /query`` body of Simple JSON or simPod JSON, Grafana internals included."""
    body: dict[str, Any] = {
        **_INTERNALS,
        "range": time_range(since, until),
        "rangeRaw": {"from": "now-5m", "to": "now"},
        "interval": f"{interval_ms // 1000}s" if interval_ms >= 1000 else f"{interval_ms}ms",
        "intervalMs": interval_ms,
        "maxDataPoints": max_points,
        "startTime": int(until * 1000),
        "scopedVars": {
            "__interval": {"text": f"{interval_ms}ms", "value": f"{interval_ms}ms"},
            "__interval_ms": {"text": str(interval_ms), "value": interval_ms},
        },
        "targets": [
            {"datasource": {"type": plugin, "uid": "edge"}, "hide": False, **target} for target in targets
        ],
        "adhocFilters": filters or [],
    }
    if plugin == SIMPOD_JSON:
        body["filters"] = filters or []
    return body


def select(document: Any, selector: str) -> Any:
    """Infinity's dotted selector (``latest.battery_level``); '' is the document itself."""
    node = document
    for part in [p for p in selector.split(".") if p]:
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def post(url: str, path: str, key: str, body: Any) -> httpx.Response:
    """A POST as Grafana's data source proxy makes it (JSON, the key header added)."""
    headers = {"x-api-key": key, "content-type": "application/json", "accept": "application/json"}
    return loopback_http().post(url + path, json=body, headers=headers, timeout=15)
