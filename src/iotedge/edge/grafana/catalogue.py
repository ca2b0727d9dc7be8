"""What a Grafana user can pick: search results, variable values, ad-hoc tags, simPod's builder.

Finder queries (for ``/search`` and ``/variable``): ``clients``, ``objects``,
``metrics``, ``types``, ``aggregates``, ``tables``; the first four take the same
``client_id``/``object_id``/``metric``/``type`` parameters as tables, e.g.
``objects?client_id=$client``. Any other text filters the list of every target.
"""

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from iotedge.edge.grafana.query import TAG_KEYS
from iotedge.edge.grafana.targets import AGGREGATES, TABLES
from iotedge.edge.reads import STAT_BY, View, split_values
from iotedge.specs import DEVICE_TYPES, METRIC_ORDER

__all__ = ["FINDERS", "MAX_RESULTS", "find", "metric_options", "payload_options", "search", "tag_values"]

MAX_RESULTS = 1000
"""Most entries a search or variable query returns."""

FINDERS: tuple[str, ...] = ("clients", "objects", "metrics", "types", "aggregates", "tables")

_TAG_ALIASES = {"client_id": "client", "object_id": "object"}
_STATIC: dict[str, tuple[str, ...]] = {
    "agg": AGGREGATES,
    "by": STAT_BY,
    "state": ("all", "open", "resolved"),
    "stale": ("true", "false"),
}


def _metrics_measured(view: View, params: Mapping[str, str]) -> list[str]:
    objs = view.select_objects(split_values(params.get("object_id")), split_values(params.get("client_id")))
    measured = {m for obj in objs for m in DEVICE_TYPES[obj.type].metrics}
    return [m for m in METRIC_ORDER if m in measured]


def find(view: View, query: str, extra: Mapping[str, Any] | None = None) -> list[str] | None:
    """Values of a finder query, or None when ``query`` is not one."""
    name, _, text = query.strip().lstrip("/").partition("?")
    name = name.strip().lower()
    if name not in FINDERS:
        return None
    params = dict(parse_qsl(text, keep_blank_values=True))
    params.update({str(k): str(v) for k, v in (extra or {}).items() if k != "target" and v is not None})
    clients, objects = split_values(params.get("client_id")), split_values(params.get("object_id"))
    types = split_values(params.get("type"))
    selected = [o for o in view.select_objects(objects, clients) if types is None or o.type in types]
    if name == "clients":
        return sorted({o.client for o in selected})[:MAX_RESULTS]
    if name == "objects":
        metrics = split_values(params.get("metric"))
        found = [
            o.id for o in selected if metrics is None or set(metrics) & set(DEVICE_TYPES[o.type].metrics)
        ]
        return found[:MAX_RESULTS]
    if name == "metrics":
        return _metrics_measured(view, params)
    if name == "types":
        return sorted({o.type for o in selected})
    return list(AGGREGATES if name == "aggregates" else TABLES)


def _every_target(view: View) -> list[str]:
    targets = [f"{obj.id}.{m}" for obj in view.select_objects() for m in DEVICE_TYPES[obj.type].metrics]
    for client in view.clients:
        targets += [f"{client}.{m}" for m in _metrics_measured(view, {"client_id": client})]
        targets.append(f"client_statistics?client_id={client}")
    targets += [f"processed_data?object_id={obj.id}" for obj in view.select_objects()]
    return [*targets, "statistics", "objects", "clients", "anomalies"]


def search(view: View, text: str) -> list[str]:
    """``/search``: a finder's values, or every target containing ``text`` (case-insensitive)."""
    found = find(view, text)
    if found is not None:
        return found
    needle = text.strip().lower()
    return [t for t in _every_target(view) if needle in t.lower()][:MAX_RESULTS]


def tag_values(view: View, key: str) -> list[str]:
    """Values of an ad-hoc filter key among what the caller may see; unknown keys have none."""
    key = _TAG_ALIASES.get(key.strip().lower(), key.strip().lower())
    if key not in TAG_KEYS:
        return []
    if key == "client":
        return view.clients
    if key == "object":
        return [obj.id for obj in view.objects][:MAX_RESULTS]
    if key == "metric":
        return _metrics_measured(view, {})
    return sorted({obj.type for obj in view.objects})


def _payload(name: str, label: str, *, static: bool = False, kind: str = "select") -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "label": label, "type": kind, "placeholder": label.lower()}
    if static:
        entry["options"] = [{"label": value, "value": value} for value in _STATIC[name]]
    return entry


def metric_options() -> list[dict[str, Any]]:
    """simPod ``/metrics``: the builder's metrics; dynamic selects load via payload options."""
    client, obj, metric = (
        _payload("client_id", "Client"),
        _payload("object_id", "Object"),
        _payload("metric", "Metric"),
    )
    return [
        {
            "label": "Time series (object, or client aggregate)",
            "value": "series",
            "payloads": [obj, client, metric, _payload("agg", "Statistic", static=True)],
        },
        {"label": "Object statistics (processed_data)", "value": "processed_data", "payloads": [obj, metric]},
        {"label": "Client statistics per metric", "value": "client_statistics", "payloads": [client]},
        {
            "label": "Statistics by client, object or metric",
            "value": "statistics",
            "payloads": [_payload("by", "Group by", static=True), client, obj, metric],
        },
        {
            "label": "Objects",
            "value": "objects",
            "payloads": [client, _payload("stale", "Stale", static=True)],
        },
        {"label": "Clients", "value": "clients", "payloads": [client]},
        {
            "label": "Anomaly events",
            "value": "anomalies",
            "payloads": [
                client,
                obj,
                metric,
                _payload("state", "State", static=True),
                _payload("limit", "Limit", kind="input"),
            ],
        },
    ]


def payload_options(view: View, name: str, payload: Mapping[str, Any]) -> list[dict[str, str]]:
    """simPod ``/metric-payload-options``: the options of payload field ``name``."""
    params = {str(k): str(v) for k, v in payload.items() if v is not None and str(v) != ""}
    if name in _STATIC:
        values: list[str] = list(_STATIC[name])
    elif name == "client_id":
        values = find(view, "clients") or []
    elif name == "object_id":
        values = find(view, "objects", {k: v for k, v in params.items() if k == "client_id"}) or []
    elif name == "metric":
        values = _metrics_measured(view, params)
    else:
        values = []
    return [{"label": value, "value": value} for value in values]
