"""Plain-dict builders for Grafana dashboard JSON: data sources, grid, panels, thresholds."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from iotedge.edge.rules import DEFAULT_RULES
from iotedge.specs import METRICS

__all__ = [
    "INFINITY",
    "PROMETHEUS",
    "SCHEMA_VERSION",
    "SIMPLE_JSON",
    "SIMPOD_JSON",
    "DataSource",
    "Grid",
    "dashboard",
    "metric_field",
    "panel",
    "thresholds",
]

SCHEMA_VERSION = 39
"""Dashboard schema version (Grafana 10.3+ reads it as is and migrates it forward)."""


@dataclass(frozen=True, slots=True)
class DataSource:
    """A provisioned data source as dashboards refer to it."""

    type: str
    uid: str
    name: str

    @property
    def ref(self) -> dict[str, str]:
        """The ``{type, uid}`` reference panels and targets carry."""
        return {"type": self.type, "uid": self.uid}


PROMETHEUS = DataSource("prometheus", "prometheus", "Prometheus")
INFINITY = DataSource("yesoreyeram-infinity-datasource", "edge-infinity", "Edge (Infinity)")
SIMPOD_JSON = DataSource("simpod-json-datasource", "edge-json", "Edge (JSON)")
SIMPLE_JSON = DataSource("grafana-simple-json-datasource", "edge-simplejson", "Edge (Simple JSON)")

_UNITS = {"celsius": "celsius", "percent": "percent"}


@dataclass
class Grid:
    """Places panels left to right in Grafana's 24-column grid, wrapping to a new row."""

    x: int = 0
    y: int = 0
    row_height: int = 0
    next_id: int = 1
    panels: list[dict[str, Any]] = field(default_factory=list)

    def add(self, body: dict[str, Any], w: int, h: int) -> dict[str, Any]:
        """Give ``body`` an id and a grid position, and keep it."""
        if self.x + w > 24:
            self.x, self.y, self.row_height = 0, self.y + self.row_height, 0
        body = {"id": self.next_id, "gridPos": {"h": h, "w": w, "x": self.x, "y": self.y}, **body}
        self.next_id += 1
        self.x += w
        self.row_height = max(self.row_height, h)
        self.panels.append(body)
        return body


def thresholds(metric: str | None) -> dict[str, Any]:
    """Threshold steps from the default anomaly rules of ``metric`` (green when no rule)."""
    rules = [r for r in DEFAULT_RULES.thresholds if r.metric == metric]
    lows = sorted(r.below for r in rules if r.below is not None)
    highs = sorted(r.above for r in rules if r.above is not None)
    steps: list[dict[str, Any]] = [{"color": "red" if lows else "green", "value": None}]
    steps += [{"color": "green", "value": value} for value in lows]
    steps += [{"color": "red", "value": value} for value in highs]
    return {"mode": "absolute", "steps": steps}


def metric_field(metric: str, **extra: Any) -> dict[str, Any]:
    """Field defaults for one metric: unit, decimals, thresholds from the rules."""
    spec = METRICS[metric]
    defaults: dict[str, Any] = {
        "unit": _UNITS.get(spec.unit, "none"),
        "decimals": spec.decimals,
        "thresholds": thresholds(metric),
        **extra,
    }
    if spec.unit == "percent":
        defaults.setdefault("min", 0)
        defaults.setdefault("max", 100)
    return defaults


def panel(
    kind: str,
    title: str,
    source: DataSource,
    targets: Sequence[dict[str, Any]],
    *,
    description: str = "",
    defaults: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    overrides: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """A panel body (no id or position yet)."""
    body: dict[str, Any] = {
        "type": kind,
        "title": title,
        "datasource": source.ref,
        "targets": [{"datasource": source.ref, **target} for target in targets],
        "fieldConfig": {"defaults": defaults or {}, "overrides": list(overrides)},
        "options": options or {},
    }
    if description:
        body["description"] = description
    return body


def dashboard(
    *,
    uid: str,
    title: str,
    description: str,
    tags: Sequence[str],
    panels: Sequence[dict[str, Any]],
    variables: Sequence[dict[str, Any]] = (),
    annotations: Sequence[dict[str, Any]] = (),
    time_from: str = "now-1h",
    refresh: str = "30s",
) -> dict[str, Any]:
    """A bare dashboard model, as the file provisioner wants it (no ``id``, no ``__inputs``)."""
    builtin = {
        "builtIn": 1,
        "datasource": {"type": "grafana", "uid": "-- Grafana --"},
        "enable": True,
        "hide": True,
        "iconColor": "rgba(0, 211, 255, 1)",
        "name": "Annotations & Alerts",
        "type": "dashboard",
    }
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": list(tags),
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "refresh": refresh,
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "version": 1,
        "links": [],
        "annotations": {"list": [builtin, *annotations]},
        "templating": {"list": list(variables)},
        "panels": list(panels),
    }
