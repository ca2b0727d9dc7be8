"""The edge performance dashboard: container resources, API, device API, pipeline (Prometheus)."""

from typing import Any

from tools.dashboards.layout import PROMETHEUS, Grid, dashboard, panel

__all__ = ["METRIC_NAMES", "performance_dashboard"]

METRIC_NAMES: tuple[str, ...] = (
    "edge_info",
    "edge_cpu_usage",
    "edge_memory_usage",
    "edge_disk_usage",
    "iotedge_http_requests_total",
    "iotedge_http_request_duration_seconds_bucket",
    "iotedge_upstream_requests_total",
    "iotedge_collector_lag_seconds",
    "iotedge_collector_last_success_timestamp_seconds",
    "iotedge_readings_ingested_total",
    "iotedge_readings_rejected_total",
    "iotedge_anomalies_total",
    "iotedge_notifications_total",
)
"""Every metric the dashboard's queries read (the edge's metrics server exports them)."""

# Every edge exports edge_info{edge_id}; joining on it names the edge and lets $edge_id filter.
_EDGE = 'on (job, instance) group_left (edge_id) edge_info{edge_id=~"$edge_id"}'
_RATE = "$__rate_interval"


def _edge(expr: str) -> str:
    """``expr`` restricted to the chosen edges and labelled with their edge_id."""
    return f"({expr}) * {_EDGE}"


def _target(expr: str, legend: str, ref: str = "A") -> dict[str, Any]:
    return {
        "refId": ref,
        "expr": expr,
        "legendFormat": legend,
        "range": True,
        "instant": False,
        "editorMode": "code",
    }


def _series(
    title: str, targets: list[dict[str, Any]], unit: str, description: str, **defaults: Any
) -> dict[str, Any]:
    return panel(
        "timeseries",
        title,
        PROMETHEUS,
        targets,
        description=description,
        defaults={"unit": unit, "custom": {"fillOpacity": 10, "showPoints": "never"}, **defaults},
        options={
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    )


def _percent_thresholds(warn: float, high: float) -> dict[str, Any]:
    steps = [
        {"color": "green", "value": None},
        {"color": "orange", "value": warn},
        {"color": "red", "value": high},
    ]
    return {"mode": "absolute", "steps": steps}


def performance_dashboard() -> dict[str, Any]:
    """The edge performance dashboard."""
    grid = Grid()
    limits = {"min": 0, "max": 100, "thresholds": _percent_thresholds(70, 90)}
    grid.add(
        _series(
            "CPU usage",
            [_target(_edge("edge_cpu_usage"), "{{edge_id}}")],
            "percent",
            "The course's edge_cpu_usage: CPU of the edge container, percent of its limit.",
            **limits,
        ),
        9,
        8,
    )
    grid.add(
        _series(
            "Memory usage",
            [_target(_edge("edge_memory_usage"), "{{edge_id}}")],
            "percent",
            "The course's edge_memory_usage: working set, percent of the container's limit.",
            **limits,
        ),
        9,
        8,
    )
    grid.add(
        panel(
            "gauge",
            "Disk usage",
            PROMETHEUS,
            [{**_target(_edge("edge_disk_usage"), "{{edge_id}}"), "range": False, "instant": True}],
            description="The course's edge_disk_usage: the data directory's file system, percent used.",
            defaults={"unit": "percent", "min": 0, "max": 100, "thresholds": _percent_thresholds(75, 85)},
            options={
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "showThresholdMarkers": True,
            },
        ),
        6,
        8,
    )
    requests = f"sum by (edge_id, route) ({_edge(f'rate(iotedge_http_requests_total[{_RATE}])')})"
    grid.add(
        _series("API requests", [_target(requests, "{{route}}")], "reqps", "Requests per second by route."),
        12,
        8,
    )
    buckets = _edge(f"rate(iotedge_http_request_duration_seconds_bucket[{_RATE}])")
    latency = [
        _target(
            f"histogram_quantile({q}, sum by (le) ({buckets}))",
            f"p{round(q * 100)}",
            ref,
        )
        for q, ref in ((0.5, "A"), (0.95, "B"), (0.99, "C"))
    ]
    grid.add(
        _series("API latency percentiles", latency, "s", "Request duration percentiles over all routes."),
        12,
        8,
    )
    error_rate = 'rate(iotedge_http_requests_total{status=~"[45].."}[' + _RATE + "])"
    errors = f"sum by (status) ({_edge(error_rate)})"
    grid.add(
        _series("API errors", [_target(errors, "{{status}}")], "reqps", "4xx and 5xx answers per second."),
        8,
        8,
    )
    upstream = f"sum by (outcome) ({_edge(f'rate(iotedge_upstream_requests_total[{_RATE}])')})"
    grid.add(
        _series(
            "Device API calls",
            [_target(upstream, "{{outcome}}")],
            "reqps",
            "Calls to the device API by outcome.",
        ),
        8,
        8,
    )
    failed_rate = 'rate(iotedge_upstream_requests_total{outcome!="ok"}[' + _RATE + "])"
    failing = f"sum ({_edge(failed_rate)}) / sum ({_edge(f'rate(iotedge_upstream_requests_total[{_RATE}])')})"
    grid.add(
        _series(
            "Device API errors",
            [_target(failing, "failed share")],
            "percentunit",
            "Share of device API calls that failed (timeout, connect, status, payload).",
            min=0,
            max=1,
        ),
        8,
        8,
    )
    lag = [
        _target(_edge("iotedge_collector_lag_seconds"), "lag {{edge_id}}", "A"),
        _target(
            _edge("time() - iotedge_collector_last_success_timestamp_seconds"),
            "since last success {{edge_id}}",
            "B",
        ),
    ]
    grid.add(
        _series("Collector lag", lag, "s", "Age of the newest data, and time since the last good poll."), 8, 8
    )
    readings = [
        _target(
            f"sum by (edge_id) ({_edge(f'rate(iotedge_readings_ingested_total[{_RATE}])')})", "ingested", "A"
        ),
        _target(
            f"sum by (reason) ({_edge(f'rate(iotedge_readings_rejected_total[{_RATE}])')})",
            "rejected: {{reason}}",
            "B",
        ),
    ]
    grid.add(_series("Readings", readings, "ops", "Readings stored, and refused by the normaliser."), 8, 8)
    anomalies = f"sum by (client, rule) ({_edge(f'increase(iotedge_anomalies_total[{_RATE}])')})"
    grid.add(
        _series(
            "Anomalies opened", [_target(anomalies, "{{client}} {{rule}}")], "short", "Anomaly events opened."
        ),
        8,
        8,
    )
    notifications = f"sum by (channel, outcome) ({_edge(f'increase(iotedge_notifications_total[{_RATE}])')})"
    grid.add(
        _series(
            "Notifications",
            [_target(notifications, "{{channel}} {{outcome}}")],
            "short",
            "Notifications sent, failed and dropped, per channel.",
        ),
        24,
        8,
    )
    edge_variable = {
        "type": "query",
        "name": "edge_id",
        "label": "Edge",
        "datasource": PROMETHEUS.ref,
        "query": {
            "query": "label_values(edge_info, edge_id)",
            "refId": "PrometheusVariableQueryEditor-VariableQuery",
        },
        "definition": "label_values(edge_info, edge_id)",
        "refresh": 2,
        "multi": True,
        "includeAll": True,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "sort": 1,
        "regex": "",
        "hide": 0,
        "skipUrlSync": False,
    }
    return dashboard(
        uid="edge-performance",
        title="Edge performance",
        description="The edge container's resources (the course's edge_* gauges), API, device API, pipeline.",
        tags=["iotedge", "prometheus"],
        panels=grid.panels,
        variables=[edge_variable],
        refresh="30s",
    )
