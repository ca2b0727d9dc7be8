"""The target grammar users type in a Grafana query row (Simple JSON, simPod JSON).

Series: ``SUBJECT[.METRIC][.AGG]``

* ``SUBJECT`` is an object id (``device_1``), a client id (``client_1``: one series per
  metric, aggregated over the client's objects), ``*`` (every visible object), or a list:
  ``(a|b)`` as Grafana's regex formatter writes a multi-value variable, ``{a,b}`` (glob)
  or ``a,b``. An id that is both an object and a client names the object.
* ``METRIC`` is ``temperature``, ``humidity``, ``battery_level`` or ``activity_level``,
  a list of them, or ``*``; without it, every metric of the subject.
* ``AGG`` picks the bucket statistic: ``avg`` (default), ``min``, ``max`` or ``count``.

Tables mirror the REST endpoints, with the same query parameters:
``processed_data?object_id=device_1``, ``client_statistics?client_id=client_1``,
``statistics?by=client|object|metric``, ``objects``, ``clients``, ``anomalies``.
simPod's ``payload`` object adds parameters, and its builder target ``series`` takes
``object_id`` or ``client_id``, ``metric`` and ``agg`` from the payload.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from iotedge.edge.reads.values import split_values
from iotedge.specs import METRICS

__all__ = [
    "AGGREGATES",
    "TABLES",
    "SeriesTarget",
    "TableTarget",
    "parse_payload",
    "parse_target",
]

AGGREGATES: tuple[str, ...] = ("avg", "min", "max", "count")
"""Bucket statistics a series target may ask for."""

TABLES: tuple[str, ...] = (
    "processed_data",
    "client_statistics",
    "statistics",
    "objects",
    "clients",
    "anomalies",
)
"""Table targets, named after the REST endpoints they mirror."""

_AGG_ALIASES = {"avg": "avg", "average": "avg", "mean": "avg", "min": "min", "max": "max", "count": "count"}


@dataclass(frozen=True, slots=True)
class SeriesTarget:
    """Series of objects or clients: ``subjects`` None means every visible object."""

    subjects: tuple[str, ...] | None
    metrics: tuple[str, ...] | None
    agg: str = "avg"
    agg_named: bool = False

    def name(self, subject: str, metric: str) -> str:
        """The series' display name, in the grammar it was asked in."""
        return f"{subject}.{metric}" + (f".{self.agg}" if self.agg_named else "")


@dataclass(frozen=True, slots=True)
class TableTarget:
    """A table named after a REST endpoint, with its query parameters."""

    name: str
    params: dict[str, str]


def _split_dotted(text: str) -> list[str]:
    """Split on dots outside ``(...)``/``{...}`` groups and not escaped."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            current.append(text[index : index + 2])
            index += 2
            continue
        if char in "({":
            depth += 1
        elif char in ")}":
            depth = max(0, depth - 1)
        elif char == "." and depth == 0:
            parts.append("".join(current))
            current = []
            index += 1
            continue
        current.append(char)
        index += 1
    parts.append("".join(current))
    return parts


def _metrics_of(text: str) -> tuple[bool, tuple[str, ...] | None]:
    """Whether ``text`` names metrics, and which (None for ``*``, all of them)."""
    if text.strip() == "*":
        return True, None
    values = split_values(text)
    if values and all(value in METRICS for value in values):
        return True, values
    return False, None


def parse_payload(payload: Any) -> dict[str, Any]:
    """simPod's ``payload`` (an object, or JSON text) as a dict; anything else is empty."""
    if isinstance(payload, str):
        try:
            payload = json.loads(payload) if payload.strip() else {}
        except ValueError:
            return {}
    return dict(payload) if isinstance(payload, Mapping) else {}


def _param_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(str(item) for item in value)
    return str(value)


def _series(text: str, agg_override: str | None) -> SeriesTarget | None:
    parts = _split_dotted(text)
    agg, named = "avg", False
    if len(parts) >= 3 and parts[-1].strip().lower() in _AGG_ALIASES:
        agg, named = _AGG_ALIASES[parts.pop().strip().lower()], True
    metrics: tuple[str, ...] | None = None
    if len(parts) >= 2:
        is_metric, found = _metrics_of(parts[-1])
        if is_metric:
            metrics = found
            parts.pop()
    if agg_override is not None:
        if agg_override.lower() not in _AGG_ALIASES:
            return None
        agg, named = _AGG_ALIASES[agg_override.lower()], True
    subject = ".".join(parts).strip()
    if not subject:
        return None
    subjects = None if subject == "*" else split_values(subject)
    if subject != "*" and subjects is None:
        return None
    return SeriesTarget(subjects=subjects, metrics=metrics, agg=agg, agg_named=named)


def parse_target(text: str | None, payload: Any = None) -> SeriesTarget | TableTarget | None:
    """Parse a query row's ``target`` (plus simPod's ``payload``); None when it means nothing."""
    extra = {k: v for k, v in parse_payload(payload).items() if _param_text(v) is not None}
    body = (text or "").strip()
    if not body:
        return None
    name, sep, query = body.lstrip("/").partition("?")
    params = {key: value for key, value in parse_qsl(query, keep_blank_values=True)} if sep else {}
    params.update({str(k): str(_param_text(v)) for k, v in extra.items()})
    lowered = name.strip().lower()
    if lowered in TABLES:
        return TableTarget(name=lowered, params=params)
    if lowered == "series":
        subject = params.get("object_id") or params.get("client_id") or ""
        metric = params.get("metric") or ""
        return _series(f"{subject}.{metric}" if metric else subject, params.get("agg"))
    if sep:
        return None
    return _series(body, _param_text(extra.get("agg")))
