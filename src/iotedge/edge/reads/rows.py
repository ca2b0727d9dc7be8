"""Flat rows of a caller's view: statistics, objects, clients and anomaly events.

Numbers and epoch-millisecond times, the shapes Grafana reads without any
transformation; the REST endpoints for Infinity and Grafana's table targets return them.
"""

from collections.abc import Sequence
from typing import Any

from iotedge.edge.reads.view import View
from iotedge.edge.reads.window import Window
from iotedge.edge.store import EMPTY, Summary, anomaly_json, pool
from iotedge.edge.store.events import ANOMALY_FIELDS
from iotedge.edge.timefmt import epoch_ms
from iotedge.errors import BadRequest
from iotedge.specs import METRIC_ORDER

__all__ = [
    "ANOMALY_LIMIT",
    "STAT_BY",
    "anomaly_rows",
    "client_rows",
    "combine",
    "object_rows",
    "statistics_rows",
]

STAT_BY: tuple[str, ...] = ("client", "object", "metric")
"""How statistics rows may be grouped."""

ANOMALY_LIMIT = 500
"""Anomaly rows one read returns unless told otherwise."""

_ANOMALY_SHOWN = tuple(name for name in ANOMALY_FIELDS if name not in ("last_value", "message"))
_ROW_NAMES = {"client": "client_id"}  # flat rows name every id column *_id
ANOMALY_ROW_FIELDS = tuple(_ROW_NAMES.get(name, name) for name in _ANOMALY_SHOWN)
"""The event fields an anomaly row shows, in order (the store's, with ``client`` as ``client_id``)."""

_PER_OBJECT_QUERIES = 20  # above this many objects of one client, one grouped query is cheaper


combine = pool
"""One summary of the union of the readings the parts summarise (the store's pooling)."""


def _stat_row(summary: Summary, **labels: Any) -> dict[str, Any]:
    return {
        **labels,
        **summary.as_json(),
        "last_reading_at_ms": epoch_ms(summary.last_at) if summary.last_at is not None else None,
    }


async def statistics_rows(
    view: View,
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
    objs = view.select_objects(object_ids, client_ids)
    per_object: dict[str, dict[str, Summary]] = {}
    members: dict[str, list[str]] = {}
    for obj in objs:
        members.setdefault(obj.client, []).append(obj.id)
    for client, ids in members.items():
        detail = (
            None
            if len(ids) <= _PER_OBJECT_QUERIES
            else (await view.store.client_summaries(client, window.since, window.until))[1]
        )
        for object_id in ids:
            obj = view.by_id[object_id]
            per_object[object_id] = {
                m: await view.store.summary(object_id, m, window.since, window.until)
                if detail is None
                else detail.get(object_id, {}).get(m, EMPTY)
                for m in view.metrics_of(obj, metrics)
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


async def object_rows(
    view: View,
    *,
    client_ids: Sequence[str] | None = None,
    object_ids: Sequence[str] | None = None,
    stale: bool | None = None,
) -> list[dict[str, Any]]:
    """One row per object: latest value of each metric, last reading time, age, stale."""
    latest: dict[str, dict[str, tuple[float, float]]] = {}
    for object_id, _, metric, ts, value in await view.store.latest(view.scope):
        latest.setdefault(object_id, {})[metric] = (ts, value)
    now = view.clock()
    rows = []
    for obj in view.select_objects(object_ids, client_ids):
        values = latest.get(obj.id, {})
        last_at = max((ts for ts, _ in values.values()), default=None)
        is_stale = view.is_stale(last_at)
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


async def client_rows(view: View, *, client_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """One row per client: objects, objects offline (stale), last reading time."""
    rows: dict[str, dict[str, Any]] = {}
    for obj in await object_rows(view, client_ids=client_ids):
        row = rows.setdefault(
            obj["client_id"],
            {"client_id": obj["client_id"], "objects": 0, "offline": 0, "last_reading_at_ms": None},
        )
        row["objects"] += 1
        row["offline"] += int(obj["stale"])
        if obj["last_reading_at_ms"] is not None:
            row["last_reading_at_ms"] = max(row["last_reading_at_ms"] or 0, obj["last_reading_at_ms"])
    return [rows[client] for client in sorted(rows)]


async def anomaly_rows(
    view: View,
    window: Window,
    *,
    client_ids: Sequence[str] | None = None,
    object_ids: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    rule: str | None = None,
    state: str = "all",
    limit: int = ANOMALY_LIMIT,
) -> list[dict[str, Any]]:
    """Anomaly events overlapping the window, newest first, with annotation fields."""
    if state not in ("open", "resolved", "all"):
        raise BadRequest("state", "must be open, resolved or all")
    scope = view.scope if client_ids is None else frozenset(c for c in client_ids if c in view.clients)
    records = await view.store.anomalies(
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
        if not view.keep(
            client=record.client, object=record.object_id, metric=record.metric, type=record.type
        ):
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
                **{_ROW_NAMES.get(name, name): body[name] for name in _ANOMALY_SHOWN},
                "state": body["state"],
            }
        )
    return rows
