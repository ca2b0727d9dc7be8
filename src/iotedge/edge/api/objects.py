"""The objects the edge polls, and their stored series."""

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from iotedge.edge.api.models import ObjectOut, ObjectsOut, ReadingsOut
from iotedge.edge.api.selection import LIST_HELP, MAX_LIST_LENGTH, clients_param
from iotedge.edge.context import EdgeContext
from iotedge.edge.deps import ContextDep, PrincipalDep, TimeRangeDep, visible_object_metric
from iotedge.edge.store import ObjectRow
from iotedge.edge.timefmt import epoch_ms, iso_utc
from iotedge.errors import BadRequest, NotFound
from iotedge.specs import DEVICE_TYPES

_ObjectId = Annotated[str, Path(min_length=1, max_length=200)]

router = APIRouter(tags=["objects"])

MAX_POINTS = 10_000


def _object_json(ctx: EdgeContext, obj: ObjectRow, latest: dict[str, tuple[float, float]]) -> dict[str, Any]:
    kind = DEVICE_TYPES[obj.type]
    last_at = max((ts for ts, _ in latest.values()), default=None)
    return {
        "id": obj.id,
        "client": obj.client,
        "type": obj.type,
        "primary_metric": kind.primary,
        "metrics": list(kind.metrics),
        "latest": {metric: value for metric, (_, value) in sorted(latest.items())},
        "last_reading_at": iso_utc(last_at) if last_at is not None else None,
        "stale": ctx.is_stale(last_at),
    }


@router.get(
    "/objects",
    response_model=ObjectsOut,
    responses={404: {"description": "A named client does not exist for this key."}},
)
async def list_objects(
    ctx: ContextDep,
    principal: PrincipalDep,
    client_id: Annotated[str | None, Query(max_length=MAX_LIST_LENGTH, description=LIST_HELP)] = None,
) -> Any:
    """Every object visible to the key, with its newest values."""
    clients = clients_param(principal, client_id)
    scope = principal.scope if clients is None else frozenset(clients)
    latest: dict[str, dict[str, tuple[float, float]]] = {}
    for object_id, _, metric, ts, value in await ctx.store.latest(scope):
        latest.setdefault(object_id, {})[metric] = (ts, value)
    objects = [_object_json(ctx, obj, latest.get(obj.id, {})) for obj in await ctx.store.objects(scope)]
    return {"objects": objects, "count": len(objects), "edge_id": ctx.edge_id}


@router.get("/objects/{object_id}", response_model=ObjectOut, responses={404: {"description": "Not found."}})
async def get_object(ctx: ContextDep, principal: PrincipalDep, object_id: _ObjectId) -> Any:
    """One object with its newest values."""
    obj = await ctx.store.object(object_id, principal.scope)
    if obj is None:
        raise NotFound("Object not found")
    return _object_json(ctx, obj, await ctx.store.latest_of(obj.id))


@router.get(
    "/objects/{object_id}/readings",
    response_model=ReadingsOut,
    responses={404: {"description": "Not found."}},
)
async def readings(
    ctx: ContextDep,
    principal: PrincipalDep,
    window: TimeRangeDep,
    object_id: _ObjectId,
    metric: Annotated[str | None, Query(max_length=40, description="Default: the primary metric.")] = None,
    step: Annotated[
        float | None, Query(gt=0, le=86400, description="Bucket seconds; averages with min/max.")
    ] = None,
    step_ms: Annotated[
        float | None,
        Query(
            gt=0,
            le=86_400_000,
            description="Bucket ms (Grafana's ${__interval_ms}); raised to fit the limit.",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_POINTS)] = 1000,
) -> Any:
    """A series of one metric, ascending, timestamps in epoch milliseconds."""
    obj, chosen = await visible_object_metric(ctx, principal, object_id, metric)
    if step is None and step_ms is not None:
        step = max(step_ms / 1000, (window.until - window.since) / limit)
    if step is not None:
        if (window.until - window.since) / step > MAX_POINTS:
            raise BadRequest("step", f"too small for the window: at most {MAX_POINTS} buckets")
        points = [
            {
                "timestamp": epoch_ms(b.ts),
                "value": b.average,
                "min": b.min,
                "max": b.max,
                "count": b.count,
            }
            for b in await ctx.store.bucketed([obj.id], chosen, window.since, window.until, step)
        ][-limit:]
    else:
        points = [
            {"timestamp": epoch_ms(ts), "value": value}
            for ts, value in await ctx.store.raw_series(obj.id, chosen, window.since, window.until, limit)
        ]
    return {
        "object_id": obj.id,
        "client": obj.client,
        "metric": chosen,
        "window": window.as_json(),
        "step_seconds": step,
        "points": points,
    }
