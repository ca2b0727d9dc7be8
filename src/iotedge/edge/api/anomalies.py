"""Anomaly events the rules recorded."""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from iotedge.edge.api.models import AnomaliesOut
from iotedge.edge.api.selection import LIST_HELP, MAX_LIST_LENGTH, clients_param
from iotedge.edge.deps import ContextDep, PrincipalDep
from iotedge.edge.reads import split_values
from iotedge.edge.store import anomaly_json
from iotedge.edge.timefmt import parse_instant

router = APIRouter(tags=["anomalies"])


@router.get(
    "/anomalies",
    response_model=AnomaliesOut,
    responses={404: {"description": "A named client does not exist for this key."}},
)
async def anomalies(
    ctx: ContextDep,
    principal: PrincipalDep,
    client_id: Annotated[str | None, Query(max_length=MAX_LIST_LENGTH, description=LIST_HELP)] = None,
    object_id: Annotated[str | None, Query(max_length=MAX_LIST_LENGTH, description=LIST_HELP)] = None,
    metric: Annotated[str | None, Query(max_length=200, description=LIST_HELP)] = None,
    rule: Annotated[str | None, Query(max_length=60)] = None,
    state: Literal["open", "resolved", "all"] = "all",
    from_: Annotated[str | None, Query(alias="from", max_length=40)] = None,
    to: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> Any:
    """Events visible to the key, newest first; filters combine."""
    clients = clients_param(principal, client_id)
    scope = principal.scope if clients is None else frozenset(clients)
    records = await ctx.store.anomalies(
        scope,
        object_id=split_values(object_id),
        metric=split_values(metric),
        rule=rule,
        state=state,
        since=parse_instant("from", from_) if from_ else None,
        until=parse_instant("to", to) if to else None,
        limit=limit,
    )
    events = [anomaly_json(record) for record in records]
    return {"anomalies": events, "count": len(events), "edge_id": ctx.edge_id}
