"""The course's statistics endpoints: ``/processed_data`` and ``/client_statistics``."""

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query
from starlette.responses import Response

from iotedge.edge.api.models import ClientsStatisticsOut, ClientStatisticsOut, ProcessedDataOut
from iotedge.edge.api.trusted import Spliced, TrustedJSON
from iotedge.edge.auth import Principal
from iotedge.edge.context import EdgeContext
from iotedge.edge.deps import ContextDep, PrincipalDep, TimeRange, TimeRangeDep, chosen_metric
from iotedge.edge.store.records import ClientAnswer
from iotedge.edge.store.summaries import EMPTY
from iotedge.edge.timefmt import iso_utc
from iotedge.errors import NotFound
from iotedge.specs import DEVICE_TYPES
from iotedge.web import error_response

router = APIRouter(tags=["statistics"])

_ID = Query(min_length=1, max_length=200)


@router.get(
    "/processed_data",
    response_model=ProcessedDataOut,
    responses={
        404: {"description": "No such object for this key."},
        503: {"description": "No data yet."},
    },
)
async def processed_data(
    ctx: ContextDep,
    principal: PrincipalDep,
    window: TimeRangeDep,
    object_id: Annotated[str, _ID],
    metric: Annotated[str | None, Query(max_length=40, description="Default: the primary metric.")] = None,
) -> Any:
    """Statistics of one object over the window, computed from the edge's store."""
    return _response(await processed_data_answer(ctx, principal, window, object_id, metric))


async def processed_data_answer(
    ctx: EdgeContext, principal: Principal, window: TimeRange, object_id: str, metric: str | None
) -> bytes | Response:
    """The answer of ``/processed_data`` (the route and the fast lane share it): a 200's JSON
    body, or another response.

    Raises:
        NotFound: no such object for this key.
        BadRequest: the object does not measure ``metric``.
    """
    answer = await ctx.store.object_answer(object_id, principal.scope, window.since, window.until)
    if answer is None:
        raise NotFound("Object not found")
    obj = answer.object
    chosen = chosen_metric(obj, metric)
    last_at = max((ts for ts, _ in answer.latest.values()), default=None)
    if last_at is None:
        return error_response(
            503,
            "No data yet",
            {"object_id": obj.id, "stale": True, "upstream_error": ctx.collector.health.last_error},
            headers={"Retry-After": str(max(1, round(ctx.settings.poll_interval)))},
        )
    # Rendered once per answer (the store's cache serves one answer many times); the fields
    # that change with the clock are filled in per request.
    key = ("processed", chosen, ctx.edge_id)
    template: Spliced | None = answer.memo.get(key)
    if template is None:
        summaries = {m: answer.summaries.get(m, EMPTY) for m in DEVICE_TYPES[obj.type].metrics}
        body = {
            "object_id": obj.id,
            "client": obj.client,
            "type": obj.type,
            "metric": chosen,
            "window": None,
            "statistics": summaries[chosen].as_json(),
            "metrics": {m: s.as_json() for m, s in summaries.items()},
            "anomalies": {"open": answer.open_anomalies, "total": answer.total_anomalies},
            "last_reading_at": iso_utc(last_at),
            "age_seconds": None,
            "stale": None,
            "edge_id": ctx.edge_id,
        }
        template = answer.memo[key] = Spliced(body, ("window", "age_seconds", "stale"))
    age = round(ctx.clock() - last_at, 3)
    return template.render(window.as_json(), age, ctx.is_stale(last_at))


async def client_statistics_body(ctx: EdgeContext, client: str, window: TimeRange) -> dict[str, Any]:
    """One client's per-metric and per-object statistics."""
    return client_statistics_of(
        ctx, client, window, await ctx.store.client_answer(client, window.since, window.until)
    )


def client_statistics_of(
    ctx: EdgeContext, client: str, window: TimeRange, answer: ClientAnswer
) -> dict[str, Any]:
    """One client's statistics body from the store's :class:`ClientAnswer`."""
    body, last_at = _client_fields(ctx, client, answer)
    body["window"] = window.as_json()
    body["stale"] = ctx.is_stale(last_at)
    return body


def _client_fields(
    ctx: EdgeContext, client: str, answer: ClientAnswer
) -> tuple[dict[str, Any], float | None]:
    """The body of :func:`client_statistics_of` without its window and stale flag (None), and
    the time of the client's newest reading in the window."""
    per_metric, per_object, objects = answer.per_metric, answer.per_object, answer.objects
    last_at = max((s.last_at for s in per_metric.values() if s.last_at is not None), default=None)
    body = {
        "client_id": client,
        "window": None,
        "metrics": {
            metric: {
                **summary.as_json(),
                "objects": sum(1 for o in per_object.values() if metric in o),
            }
            for metric, summary in sorted(per_metric.items())
        },
        "objects": [
            {
                "object_id": obj.id,
                "type": obj.type,
                "metrics": {m: s.as_json() for m, s in sorted(per_object.get(obj.id, {}).items())},
            }
            for obj in objects
        ],
        "last_reading_at": iso_utc(last_at) if last_at is not None else None,
        "stale": None,
        "edge_id": ctx.edge_id,
    }
    return body, last_at


def _client_body(ctx: EdgeContext, client: str, window: TimeRange, answer: ClientAnswer) -> bytes:
    """:func:`client_statistics_of` rendered, the unchanging part once per answer."""
    key = ("client", client, ctx.edge_id)
    memo: tuple[Spliced, float | None] | None = answer.memo.get(key)
    if memo is None:
        body, last_at = _client_fields(ctx, client, answer)
        memo = answer.memo[key] = (Spliced(body, ("window", "stale")), last_at)
    template, last_at = memo
    return template.render(window.as_json(), ctx.is_stale(last_at))


@router.get(
    "/client_statistics",
    response_model=ClientStatisticsOut | ClientsStatisticsOut,
    responses={404: {"description": "No such client for this key."}},
)
async def client_statistics(
    ctx: ContextDep,
    principal: PrincipalDep,
    window: TimeRangeDep,
    client_id: Annotated[
        str | None,
        Query(min_length=1, max_length=200, description="Default: every client you may see."),
    ] = None,
) -> Any:
    """Per-client statistics per metric (temperatures are never averaged with humidities)."""
    return _response(await client_statistics_answer(ctx, principal, window, client_id))


async def client_statistics_answer(
    ctx: EdgeContext, principal: Principal, window: TimeRange, client_id: str | None
) -> bytes:
    """The answer of ``/client_statistics`` (the route and the fast lane share it): a 200's
    JSON body.

    Raises:
        NotFound: no such client for this key.
    """
    if client_id is not None:
        if not principal.can_see(client_id):
            raise NotFound("Client not found")
        # A client that may be seen is listed by ``clients`` exactly when it has objects.
        answer = await ctx.store.client_answer(client_id, window.since, window.until)
        if not answer.objects:
            raise NotFound("Client not found")
        return _client_body(ctx, client_id, window, answer)
    everyone = {
        "clients": [
            await client_statistics_body(ctx, c, window) for c in await ctx.store.clients(principal.scope)
        ],
        "edge_id": ctx.edge_id,
    }
    return orjson.dumps(everyone)


def _response(answer: bytes | Response) -> Response:
    """A route's response from its answer (bytes: a 200's JSON body)."""
    return TrustedJSON(answer) if isinstance(answer, bytes) else answer
