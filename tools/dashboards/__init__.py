"""Grafana dashboards as code: ``python -m tools.dashboards`` writes deploy/grafana/dashboards.

The JSON files are committed; a test checks they equal what this package generates.
"""

import json
from pathlib import Path
from typing import Any

from tools.dashboards.fleet import fleet_dashboard
from tools.dashboards.layout import INFINITY, PROMETHEUS, SIMPLE_JSON, SIMPOD_JSON, DataSource
from tools.dashboards.performance import performance_dashboard
from tools.dashboards.sources import SIMPLE, SIMPOD, InfinitySource

__all__ = ["DATASOURCES", "dashboards", "render", "write"]

DATASOURCES: tuple[DataSource, ...] = (PROMETHEUS, INFINITY, SIMPOD_JSON, SIMPLE_JSON)
"""The provisioned data sources the dashboards refer to (by uid)."""


def dashboards() -> dict[str, dict[str, Any]]:
    """File name -> dashboard model."""
    return {
        "iot-fleet.json": fleet_dashboard(
            InfinitySource(),
            uid="iot-fleet",
            title="IoT fleet",
            note="Reads the edge's REST API with the Infinity data source (Grafana 11.6+).",
        ),
        "iot-fleet-json.json": fleet_dashboard(
            SIMPOD,
            uid="iot-fleet-json",
            title="IoT fleet (JSON plugin)",
            note="Same panels through the simPod JSON data source (Grafana 10+).",
        ),
        "iot-fleet-simplejson.json": fleet_dashboard(
            SIMPLE,
            uid="iot-fleet-simplejson",
            title="IoT fleet (Simple JSON, Grafana 11 and older)",
            note="Same panels through the Angular Simple JSON data source, which Grafana 12 no longer loads.",
        ),
        "edge-performance.json": performance_dashboard(),
    }


def render() -> dict[str, str]:
    """File name -> the exact text committed under deploy/grafana/dashboards."""
    return {
        name: json.dumps(model, indent=2, ensure_ascii=False) + "\n" for name, model in dashboards().items()
    }


def write(directory: Path) -> list[Path]:
    """Write every dashboard into ``directory``; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
