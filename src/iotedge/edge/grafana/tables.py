"""Table targets and the flat rows the REST endpoints for Infinity return.

Statistics, objects, clients and anomaly events as lists of flat rows with numbers and
epoch-millisecond times, the shapes Grafana reads without any transformation.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from iotedge.edge.grafana.query import Evaluator, Window
from iotedge.edge.grafana.targets import TableTarget, split_values
from iotedge.edge.store import EMPTY, Summary, anomaly_json, pool
from iotedge.edge.timefmt import epoch_ms
from iotedge.errors import BadRequest
from iotedge.specs import METRIC_ORDER

__all__ = [
    "STAT_BY",
    "Table",
    "anomaly_rows",
    "client_rows",
    "combine",
    "object_rows",
    "statistics_rows",
    "table",
]

STAT_BY: tuple[str, ...] = ("client", "object", "metric")
"""How statistics rows may be grouped."""

_EMPTY = EMPTY
_PER_OBJECT_QUERIES = 20  # above this many objects of one client, one grouped query is cheaper
_STATS = ["count", "average", "min", "max", "stddev", "last"]
_ANOMALY_LIMIT = 500


@dataclass(frozen=True, slots=True)
class Table:
    """Columns as (key, Grafana type) and rows as dicts keyed like the columns."""

    columns: list[tuple[str, str]]
    rows: list[dict[str, Any]]

    def positional(self) -> list[list[Any]]:
        """Rows as lists in column order (the Simple JSON table shape)."""
        return [[row.get(key) for key, _ in self.columns] for row in self.rows]


def _round(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 4)


combine = pool
"""One summary of the union of the readings the parts summarise (the store's pooling)."""


def _stat_row(summary: Summary, **labels: Any) -> dict[str, Any]:
    return {
        **labels,
        "count": summary.count,
        "average": _round(summary.average),
        "min": summary.min,
        "max": summary.max,
        "stddev": _round(summary.stddev),
        "last": summary.last,
        "last_reading_at_ms": epoch_ms(summary.last_at) if summary.last_at is not None else None,
    }


def statistics_rows(
    ev: Evaluator,
    window: Window,
    *,
    by: str = "client",
    client_ids: Sequence[str] | None = None,
    object_ids: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Statistics per client and metric, per object and metric, or per metric (never mixing metrics)."""
    if by not in STAT_BY:
        raise BadRequest("by", f"must be one of {', '.join(STAT_BY)}")
    objs = ev.select_objects(object_ids, client_ids)
    per_object: dict[str, dict[str, Summary]] = {}
    members: dict[str, list[str]] = {}
    for obj in objs:
        members.setdefault(obj.client, []).append(obj.id)
    for client, ids in members.items():
        detail = (
            None
            if len(ids) <= _PER_OBJECT_QUERIES
            else ev.store.client_summaries(client, window.since, window.until)[1]
        )
        for object_id in ids:
            obj = ev.by_id[object_id]
            per_object[object_id] = {
                m: ev.store.summary(object_id, m, window.since, window.until)
                if detail is None
                else detail.get(object_id, {}).get(m, _EMPTY)
                for m in ev.metrics_of(obj, metrics)
            }
    if by == "object":
        return [
            _stat_row(s, client_id=o.client, object_id=o.id, type=o.type, metric=m, objects=int(s.count > 0))
            for o in objs
            for m, s in per_object[o.id].items()
        ]
    groups: dict[tuple[str | None, str], list[Summary]] = {}
    for obj in objs:
        for metric, summary in per_object[obj.id].items():
            groups.setdefault((obj.client if by == "client" else None, metric), []).append(summary)
    order = {m: i for i, m in enumerate(METRIC_ORDER)}
    return [
        _stat_row(
            combine(parts),
            client_id=client,
            object_id=None,
            type=None,
            metric=metric,
            objects=sum(1 for p in parts if p.count),
        )
        for (client, metric), parts in sorted(
            groups.items(), key=lambda kv: (kv[0][0] or "", order[kv[0][1]])
        )
    ]


def object_rows(
    ev: Evaluator,
    *,
    client_ids: Sequence[str] | None = None,
    object_ids: Sequence[str] | None = None,
    stale: bool | None = None,
) -> list[dict[str, Any]]:
    """One row per object: latest value of each metric, last reading time, age, stale."""
    latest: dict[str, dict[str, tuple[float, float]]] = {}
    for object_id, _, metric, ts, value in ev.store.latest(ev.scope):
        latest.setdefault(object_id, {})[metric] = (ts, value)
    now = ev.ctx.clock()
    rows = []
    for obj in ev.select_objects(object_ids, client_ids):
        values = latest.get(obj.id, {})
        last_at = max((ts for ts, _ in values.values()), default=None)
        is_stale = ev.ctx.is_stale(last_at)
        if stale is not None and is_stale != stale:
            continue
        row: dict[str, Any] = {
            "object_id": obj.id,
            "client_id": obj.client,
            "type": obj.type,
            "last_reading_at_ms": epoch_ms(last_at) if last_at is not None else None,
            "age_seconds": round(now - last_at, 3) if last_at is not None else None,
            "stale": is_stale,
        }
        row.update({m: values[m][1] if m in values else None for m in METRIC_ORDER})
        rows.append(row)
    return rows


def client_rows(ev: Evaluator, *, client_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """One row per client: objects, objects offline (stale), last reading time."""
    rows: dict[str, dict[str, Any]] = {}
    for obj in object_rows(ev, client_ids=client_ids):
        row = rows.setdefault(
            obj["client_id"],
            {"client_id": obj["client_id"], "objects": 0, "offline": 0, "last_reading_at_ms": None},
        )
        row["objects"] += 1
        row["offline"] += int(obj["stale"])
        if obj["last_reading_at_ms"] is not None:
            row["last_reading_at_ms"] = max(row["last_reading_at_ms"] or 0, obj["last_reading_at_ms"])
    return [rows[client] for client in sorted(rows)]


def anomaly_rows(
    ev: Evaluator,
    window: Window,
    *,
    client_ids: Sequence[str] | None = None,
    object_ids: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    rule: str | None = None,
    state: str = "all",
    limit: int = _ANOMALY_LIMIT,
) -> list[dict[str, Any]]:
    """Anomaly events overlapping the window, newest first, with annotation fields."""
    if state not in ("open", "resolved", "all"):
        raise BadRequest("state", "must be open, resolved or all")
    scope = ev.scope if client_ids is None else frozenset(c for c in client_ids if c in ev.clients)
    records = ev.store.anomalies(
        scope,
        object_id=object_ids,
        metric=metrics,
        rule=rule,
        state=state,
        since=window.since,
        until=window.until,
        limit=limit,
    )
    rows = []
    for record in records:
        if not ev.keep(client=record.client, object=record.object_id, metric=record.metric, type=record.type):
            continue
        body = anomaly_json(record)
        tags = [record.client, record.object_id, record.metric, record.rule, record.severity]
        rows.append(
            {
                "time": body["started_at_ms"],
                "timeEnd": body["ended_at_ms"],
                "title": f"{record.rule} on {record.object_id}",
                "text": record.message,
                "tags": ",".join(tags),
                "event_id": record.id,
                "object_id": record.object_id,
                "client_id": record.client,
                "type": record.type,
                "metric": record.metric,
                "rule": record.rule,
                "severity": record.severity,
                "value": record.value,
                "threshold": record.threshold,
                "state": body["state"],
            }
        )
    return rows


def _columns(keys: Sequence[str]) -> list[tuple[str, str]]:
    kinds = {
        "last_reading_at_ms": "time",
        "time": "time",
        "timeEnd": "time",
        "stale": "boolean",
        "objects": "number",
        "offline": "number",
        "age_seconds": "number",
        "value": "number",
        "threshold": "number",
        "event_id": "number",
        **{key: "number" for key in (*_STATS, *METRIC_ORDER)},
    }
    return [(key, kinds.get(key, "string")) for key in keys]


def _bool(params: Mapping[str, str], name: str) -> bool | None:
    text = params.get(name, "").strip().lower()
    if not text:
        return None
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise BadRequest(name, "must be true or false")


def _limit(params: Mapping[str, str]) -> int:
    try:
        limit = int(params.get("limit") or _ANOMALY_LIMIT)
    except ValueError:
        raise BadRequest("limit", "must be a whole number") from None
    if not 1 <= limit <= 10_000:
        raise BadRequest("limit", "must be between 1 and 10000")
    return limit


def table(ev: Evaluator, target: TableTarget, window: Window) -> Table:
    """The table a table target names, filtered by the request's ad-hoc filters."""
    p = target.params
    clients, objects = split_values(p.get("client_id")), split_values(p.get("object_id"))
    metrics = split_values(p.get("metric"))
    stats = [*_STATS, "last_reading_at_ms"]
    if target.name in ("processed_data", "client_statistics", "statistics"):
        by = (
            {"processed_data": "object", "client_statistics": "client"}.get(target.name)
            or p.get("by")
            or "client"
        )
        labels = {
            "object": ["object_id", "client_id", "type", "metric"],
            "client": ["client_id", "metric", "objects"],
            "metric": ["metric", "objects"],
        }.get(by, [])
        rows = statistics_rows(ev, window, by=by, client_ids=clients, object_ids=objects, metrics=metrics)
        return Table(_columns([*labels, *stats]), rows)
    if target.name == "objects":
        keys = ["object_id", "client_id", "type", "last_reading_at_ms", "age_seconds", "stale", *METRIC_ORDER]
        rows = object_rows(ev, client_ids=clients, object_ids=objects, stale=_bool(p, "stale"))
        return Table(_columns(keys), rows)
    if target.name == "clients":
        return Table(
            _columns(["client_id", "objects", "offline", "last_reading_at_ms"]),
            client_rows(ev, client_ids=clients),
        )
    rows = anomaly_rows(
        ev,
        window,
        client_ids=clients,
        object_ids=objects,
        metrics=metrics,
        rule=p.get("rule") or None,
        state=p.get("state") or "all",
        limit=_limit(p),
    )
    keys = ["time", "timeEnd", "title", "text", "tags", "object_id", "client_id", "type", "metric", "rule"]
    return Table(_columns([*keys, "severity", "value", "threshold", "state", "event_id"]), rows)
