"""Grafana's table targets: the rows of :mod:`iotedge.edge.reads.rows` with typed columns."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from iotedge.edge.grafana.targets import TableTarget
from iotedge.edge.reads import (
    ANOMALY_LIMIT,
    ANOMALY_ROW_FIELDS,
    View,
    Window,
    anomaly_rows,
    client_rows,
    object_rows,
    split_values,
    statistics_rows,
)
from iotedge.edge.store import STATISTICS
from iotedge.errors import BadRequest
from iotedge.specs import METRIC_ORDER

__all__ = ["Table", "table"]


@dataclass(frozen=True, slots=True)
class Table:
    """Columns as (key, Grafana type) and rows as dicts keyed like the columns."""

    columns: list[tuple[str, str]]
    rows: list[dict[str, Any]]

    def positional(self) -> list[list[Any]]:
        """Rows as lists in column order (the Simple JSON table shape)."""
        return [[row.get(key) for key, _ in self.columns] for row in self.rows]


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
        **{key: "number" for key in (*STATISTICS, *METRIC_ORDER)},
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
        limit = int(params.get("limit") or ANOMALY_LIMIT)
    except ValueError:
        raise BadRequest("limit", "must be a whole number") from None
    if not 1 <= limit <= 10_000:
        raise BadRequest("limit", "must be between 1 and 10000")
    return limit


async def table(view: View, target: TableTarget, window: Window) -> Table:
    """The table a table target names, filtered by the request's ad-hoc filters."""
    p = target.params
    clients, objects = split_values(p.get("client_id")), split_values(p.get("object_id"))
    metrics = split_values(p.get("metric"))
    stats = [*STATISTICS, "last_reading_at_ms"]
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
        rows = await statistics_rows(
            view, window, by=by, client_ids=clients, object_ids=objects, metrics=metrics
        )
        return Table(_columns([*labels, *stats]), rows)
    if target.name == "objects":
        keys = ["object_id", "client_id", "type", "last_reading_at_ms", "age_seconds", "stale", *METRIC_ORDER]
        rows = await object_rows(view, client_ids=clients, object_ids=objects, stale=_bool(p, "stale"))
        return Table(_columns(keys), rows)
    if target.name == "clients":
        return Table(
            _columns(["client_id", "objects", "offline", "last_reading_at_ms"]),
            await client_rows(view, client_ids=clients),
        )
    rows = await anomaly_rows(
        view,
        window,
        client_ids=clients,
        object_ids=objects,
        metrics=metrics,
        rule=p.get("rule") or None,
        state=p.get("state") or "all",
        limit=_limit(p),
    )
    keys = ["time", "timeEnd", "title", "text", "tags", *ANOMALY_ROW_FIELDS, "state", "event_id"]
    return Table(_columns(keys), rows)
