"""Grafana dashboards as code: ``python -m tools.dashboards`` writes deploy/grafana/dashboards.

The JSON files are committed; a test checks they equal what this package generates.
"""

import json
from pathlib import Path
from typing import Any

from tools.dashboards.fleet import fleet_dashboard
from tools.dashboards.grafana11 import grafana11_tree
from tools.dashboards.layout import INFINITY, PROMETHEUS, SIMPLE_JSON, SIMPOD_JSON, DataSource
from tools.dashboards.performance import performance_dashboard
from tools.dashboards.sources import SIMPLE, SIMPOD, InfinitySource

__all__ = ["DATASOURCES", "angular_dashboards", "dashboards", "render", "render_grafana11", "write"]

DATASOURCES: tuple[DataSource, ...] = (PROMETHEUS, INFINITY, SIMPOD_JSON, SIMPLE_JSON)
"""The provisioned data sources the dashboards refer to (by uid)."""


def dashboards() -> dict[str, dict[str, Any]]:
    """File name -> dashboard model, for the default Grafana (12: no Angular plugin)."""
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
        "edge-performance.json": performance_dashboard(),
    }


def angular_dashboards() -> dict[str, dict[str, Any]]:
    """File name -> dashboard model of the dashboards only Grafana 11 with Angular can show."""
    return {
        "iot-fleet-simplejson.json": fleet_dashboard(
            SIMPLE,
            uid="iot-fleet-simplejson",
            title="IoT fleet (Simple JSON, Grafana 11 and older)",
            note="Same panels through the Angular Simple JSON data source, which Grafana 12 no longer loads.",
        ),
    }


def _text(models: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {name: json.dumps(model, indent=2, ensure_ascii=False) + "\n" for name, model in models.items()}


def render() -> dict[str, str]:
    """File name -> the exact text committed under deploy/grafana/dashboards."""
    return _text(dashboards())


def render_grafana11(deploy_grafana: Path) -> dict[str, str]:
    """Relative path -> the exact text committed under deploy/grafana/grafana11."""
    return grafana11_tree(deploy_grafana, {**render(), **_text(angular_dashboards())})


def write(directory: Path) -> list[Path]:
    """Write every dashboard into ``directory``, and the Grafana 11 tree next to it; returns the paths."""
    written = []
    files = {directory / name: text for name, text in render().items()}
    files |= {
        directory.parent / "grafana11" / rel: text for rel, text in render_grafana11(directory.parent).items()
    }
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
