"""The IoT fleet dashboard: series, statistics, battery, objects offline, anomalies.

Built once per data source plugin (see :mod:`tools.dashboards.sources`), so whichever
plugin a Grafana has, one provisioned fleet dashboard shows live data.
"""

from typing import Any

from iotedge.specs import METRICS
from tools.dashboards.layout import Grid, dashboard, metric_field, panel, thresholds
from tools.dashboards.sources import Source

__all__ = ["SERIES_METRICS", "fleet_dashboard"]

SERIES_METRICS: tuple[str, ...] = ("temperature", "humidity", "activity_level", "battery_level")

_TITLES = {
    "temperature": "Temperature",
    "humidity": "Humidity",
    "activity_level": "Activity level",
    "battery_level": "Battery level",
}
_STAT_FIELDS = "/^(average|min|max|last)$/"


def _stat_options(fields: str, calcs: list[str], *, values: bool = False) -> dict[str, Any]:
    return {
        "reduceOptions": {"calcs": calcs, "fields": fields, "values": values},
        "orientation": "auto",
        "textMode": "value_and_name",
        "colorMode": "value",
        "graphMode": "none",
        "justifyMode": "auto",
        "showPercentChange": False,
    }


def _series_panel(source: Source, metric: str) -> dict[str, Any]:
    custom = {
        "drawStyle": "line",
        "lineWidth": 1,
        "fillOpacity": 0,
        "showPoints": "never",
        "spanNulls": False,
        "thresholdsStyle": {"mode": "line+area" if metric == "battery_level" else "line"},
    }
    extra: dict[str, Any] = {"custom": custom}
    if source.series_display:
        extra["displayName"] = source.series_display
    return panel(
        "timeseries",
        f"{_TITLES[metric]} per object",
        source.ds,
        [source.metric_series(metric)],
        description=f"Bucketed average of each selected object's {metric}; lines at the anomaly thresholds.",
        defaults=metric_field(metric, **extra),
        options={
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    )


def _color_by_value(name: str, mapping: dict[str, str]) -> dict[str, Any]:
    return {
        "matcher": {"id": "byName", "options": name},
        "properties": [
            {"id": "custom.cellOptions", "value": {"type": "color-text"}},
            {
                "id": "mappings",
                "value": [
                    {
                        "type": "value",
                        "options": {
                            key: {"color": color, "index": i}
                            for i, (key, color) in enumerate(mapping.items())
                        },
                    }
                ],
            },
        ],
    }


def fleet_dashboard(source: Source, *, uid: str, title: str, note: str) -> dict[str, Any]:
    """The fleet dashboard reading the edge through ``source``'s plugin."""
    grid = Grid()
    for metric in ("temperature", "humidity", "activity_level"):
        grid.add(
            panel(
                "stat",
                f"{_TITLES[metric]} (selection)",
                source.ds,
                [source.metric_stats(metric)],
                description=f"Average, min, max and last {metric} of the selected objects in the time range.",
                defaults=metric_field(metric),
                options=_stat_options(_STAT_FIELDS, ["lastNotNull"]),
            ),
            6,
            5,
        )
    grid.add(
        panel(
            "gauge",
            "Battery level (selection)",
            source.ds,
            [source.metric_stats("battery_level")],
            description="Average, min, max and last battery level of the selected objects.",
            defaults=metric_field("battery_level"),
            options={**_stat_options(_STAT_FIELDS, ["lastNotNull"]), "showThresholdMarkers": True},
        ),
        6,
        5,
    )
    for metric in ("temperature", "humidity"):
        grid.add(_series_panel(source, metric), 12, 8)
    for metric in ("activity_level", "battery_level"):
        grid.add(_series_panel(source, metric), 12, 8)
    grid.add(
        panel(
            "bargauge",
            "Battery level per object (last)",
            source.ds,
            [source.object_stats("battery_level")],
            description="Newest battery level of each selected object in the time range.",
            defaults=metric_field("battery_level", displayName="${__data.fields.object_id}"),
            options={
                "reduceOptions": {"calcs": [], "fields": "/^last$/", "values": True},
                "orientation": "horizontal",
                "displayMode": "gradient",
                "showUnfilled": True,
                "valueMode": "color",
            },
        ),
        12,
        8,
    )
    grid.add(
        panel(
            "stat",
            "Objects offline",
            source.ds,
            [source.clients()],
            description="Objects without a fresh reading (stale) across the selected clients.",
            defaults={
                "unit": "none",
                "decimals": 0,
                "thresholds": {
                    "mode": "absolute",
                    "steps": [{"color": "green", "value": None}, {"color": "red", "value": 1}],
                },
            },
            options=_stat_options("/^offline$/", ["sum"]),
        ),
        4,
        8,
    )
    grid.add(
        panel(
            "stat",
            "Objects",
            source.ds,
            [source.clients()],
            description="Objects of the selected clients.",
            defaults={"unit": "none", "decimals": 0, "thresholds": thresholds(None)},
            options=_stat_options("/^objects$/", ["sum"]),
        ),
        8,
        8,
    )
    grid.add(
        panel(
            "table",
            "Client statistics per metric",
            source.ds,
            [source.client_stats()],
            description="The course's client_statistics: a row per client and metric (never mixing metrics).",
            defaults={"decimals": 2},
            options={"showHeader": True, "cellHeight": "sm"},
        ),
        24,
        8,
    )
    grid.add(
        panel(
            "table",
            "Objects",
            source.ds,
            [source.objects()],
            description="Every selected object; stale = no fresh reading (offline).",
            options={
                "showHeader": True,
                "cellHeight": "sm",
                "sortBy": [{"displayName": "stale", "desc": True}],
            },
            overrides=[_color_by_value("stale", {"true": "red", "false": "green"})],
        ),
        24,
        8,
    )
    grid.add(
        panel(
            "table",
            "Anomaly events",
            source.ds,
            [source.anomalies()],
            description="Anomaly events of the selection overlapping the time range, newest first.",
            options={"showHeader": True, "cellHeight": "sm"},
            overrides=[_color_by_value("severity", {"critical": "red", "warning": "orange", "info": "blue"})],
        ),
        24,
        9,
    )
    units = ", ".join(f"{m} in {METRICS[m].unit}" for m in SERIES_METRICS)
    return dashboard(
        uid=uid,
        title=title,
        description=f"Objects and clients of the edge ({units}). {note}",
        tags=["iotedge", "fleet"],
        panels=grid.panels,
        variables=source.variables(),
        annotations=[source.annotation()],
    )
