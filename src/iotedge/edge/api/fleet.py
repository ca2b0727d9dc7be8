"""Flat, fleet-wide reads for Grafana's Infinity data source (and any table-minded client).

Bare arrays of flat rows with numbers and epoch-millisecond times: Infinity maps their
fields to columns with no root selector gymnastics, and turns ``/readings`` (long format,
ascending) into one line per ``series``.
"""

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from iotedge.edge.api.models import ClientsOut, ReadingRowOut, StatisticsRowOut
from iotedge.edge.api.selection import LIST_HELP, MAX_LIST_LENGTH, clients_param, metrics_param, objects_param
from iotedge.edge.deps import ContextDep, PrincipalDep, TimeRangeDep
from iotedge.edge.reads import (
    MAX_BUCKETS,
    QueryBudget,
    SeriesData,
    client_plans,
    client_rows,
    fetch,
    object_plans,
    statistics_rows,
    view_of,
    window_between,
)
from iotedge.edge.timefmt import epoch_ms
from iotedge.web import JSONBytes

router = APIRouter(tags=["fleet"])

_LIST = Query(max_length=MAX_LIST_LENGTH, description=LIST_HELP)
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "A named client or object does not exist for this key."}
}


@router.get("/readings", response_model=list[ReadingRowOut], responses=_NOT_FOUND)
async def readings(
    ctx: ContextDep,
    principal: PrincipalDep,
    window: TimeRangeDep,
    metric: Annotated[str | None, Query(max_length=200, description=LIST_HELP)] = None,
    client_id: Annotated[str | None, _LIST] = None,
    object_id: Annotated[str | None, _LIST] = None,
    by: Annotated[
        Literal["object", "client"], Query(description="One series per object, or per client.")
    ] = "object",
    agg: Literal["avg", "min", "max", "count"] = "avg",
    step_ms: Annotated[
        float | None,
        Query(gt=0, le=86_400_000, description="Bucket size in ms (Grafana's ${__interval_ms})."),
    ] = None,
    max_points: Annotated[
        int | None, Query(ge=1, le=MAX_BUCKETS, description="Most buckets per series.")
    ] = None,
) -> JSONBytes:
    """Down-sampled series of many objects (or client aggregates) as one flat array, ascending.

    The same budget as ``POST /query`` applies (500 series, 200,000 points, 8 MiB: a 422
    naming the limit beyond), and the request's cost is charged to the key's rate budget.
    """
    view = await view_of(ctx, principal.scope)
    clients = clients_param(principal, client_id)
    objs = view.select_objects(objects_param(view, object_id), clients)
    metrics = metrics_param(metric)
    span = window_between(window.since, window.until, interval_ms=step_ms, max_points=max_points)
    if by == "object":
        plans = object_plans(view, objs, metrics, agg=agg)
    else:
        plans = []
        for client in sorted({obj.client for obj in objs}):
            members = [obj for obj in objs if obj.client == client]
            plans += client_plans(view, client, members, metrics, agg=agg)
    budget = QueryBudget(names=("object_id", "max_points"), location="query")
    try:
        budget.plan_series(len(plans))
        rows = []
        for plan in plans:
            data = await fetch(view, plan, span)
            budget.spend_points(len(data.buckets), sum(bucket.count for bucket in data.buckets))
            rows += [_row(data, bucket_ts, bucket) for bucket_ts, bucket in _stamped(data, span.since)]
            await asyncio.sleep(0)  # other requests are served between two store reads
        rows.sort(key=lambda row: (row["timestamp"], row["series"], row["metric"]))
        rendered = JSONBytes(rows)
        budget.check_response(len(rendered.body))
    finally:
        ctx.limits.charge(principal.key_id, budget.cost - 1)
    return rendered


def _stamped(data: SeriesData, since: float) -> list[tuple[int, Any]]:
    return [(epoch_ms(max(bucket.ts, since)), bucket) for bucket in data.buckets]


def _row(data: SeriesData, timestamp: int, bucket: Any) -> dict[str, Any]:
    return {
        "timestamp": timestamp,
        "series": data.object_id or data.client,
        "object_id": data.object_id,
        "client_id": data.client,
        "metric": data.metric,
        "value": data.value(bucket),
        "min": bucket.min,
        "max": bucket.max,
        "count": bucket.count,
    }


@router.get("/statistics", response_model=list[StatisticsRowOut], responses=_NOT_FOUND)
async def statistics(
    ctx: ContextDep,
    principal: PrincipalDep,
    window: TimeRangeDep,
    by: Annotated[
        Literal["client", "object", "metric"],
        Query(description="Rows per client, per object, or per metric."),
    ] = "client",
    client_id: Annotated[str | None, _LIST] = None,
    object_id: Annotated[str | None, _LIST] = None,
    metric: Annotated[str | None, Query(max_length=200, description=LIST_HELP)] = None,
) -> JSONBytes:
    """Window statistics as flat rows, one per metric of each group (metrics are never mixed)."""
    view = await view_of(ctx, principal.scope)
    clients = clients_param(principal, client_id)
    rows = await statistics_rows(
        view,
        window_between(window.since, window.until),
        by=by,
        client_ids=clients,
        object_ids=objects_param(view, object_id),
        metrics=metrics_param(metric),
    )
    return JSONBytes(rows)


@router.get("/clients", response_model=ClientsOut, responses=_NOT_FOUND)
async def clients(
    ctx: ContextDep, principal: PrincipalDep, client_id: Annotated[str | None, _LIST] = None
) -> JSONBytes:
    """Clients visible to the key: objects, objects offline (stale), newest reading."""
    rows = await client_rows(
        await view_of(ctx, principal.scope), client_ids=clients_param(principal, client_id)
    )
    return JSONBytes({"clients": rows, "count": len(rows), "edge_id": ctx.edge_id})
