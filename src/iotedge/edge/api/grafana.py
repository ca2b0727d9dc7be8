"""The Grafana JSON data source protocol: Simple JSON, plus simPod JSON's extra endpoints.

Every endpoint answers within the caller's key scope, like the REST API. Grafana sends
the key itself (data source proxy, "Server" access), so the browser never sees it.
Target grammar: :mod:`iotedge.edge.grafana.targets`; finder queries:
:mod:`iotedge.edge.grafana.catalogue`; docs/grafana.md has both with examples.
"""

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Body

from iotedge.edge.deps import ContextDep, OptionalPrincipalDep, PrincipalDep
from iotedge.edge.grafana import catalogue
from iotedge.edge.grafana.models import (
    AnnotationOut,
    AnnotationsIn,
    MetricOut,
    MetricsIn,
    PayloadOptionOut,
    PayloadOptionsIn,
    QueryIn,
    SearchIn,
    SeriesOut,
    TableOut,
    TagKeyOut,
    TagValueOut,
    TagValuesIn,
    VariableIn,
    VariableOptionOut,
)
from iotedge.edge.grafana.query import TAG_KEYS, compile_filters, plan, series_table, window_of
from iotedge.edge.grafana.tables import table
from iotedge.edge.grafana.targets import SeriesTarget, TableTarget, parse_payload, parse_target
from iotedge.edge.reads import QueryBudget, View, Window, anomaly_rows, fetch, split_values, view_of
from iotedge.web import JSONBytes

router = APIRouter(tags=["grafana"])

_ANNOTATION_LIMIT = 1000


def _table_json(ref_id: str, columns: list[tuple[str, str]], rows: list[list[Any]]) -> dict[str, Any]:
    return {
        "type": "table",
        "refId": ref_id,
        "columns": [{"text": key, "type": kind} for key, kind in columns],
        "rows": rows,
    }


# The key is optional here: OpenAPI's empty requirement ({}) says "or no key" (FastAPI appends it).
@router.get("/", tags=["health"], openapi_extra={"security": [{}]})
async def root(principal: OptionalPrincipalDep) -> dict[str, str]:
    """Welcome; Grafana's "Save & test". No key needed, but a key that is sent must be valid.

    Grafana sends the data source's ``x-api-key`` here, so "Save & test" fails (401) on a
    wrong key instead of every panel failing later; a browser without a key still gets 200.
    """
    body = {
        "message": "iotedge edge API",
        "hint": "send x-api-key; /objects lists your objects, /docs the API",
    }
    if principal is not None:
        body["client"] = principal.client
    return body


@router.post("/search", response_model=list[str])
async def search(
    ctx: ContextDep, principal: PrincipalDep, body: Annotated[SearchIn | None, Body()] = None
) -> JSONBytes:
    """Targets containing the typed text, or a finder's values (``clients``, ``objects?client_id=...``)."""
    view = await view_of(ctx, principal.scope)
    return JSONBytes(catalogue.search(view, (body.target if body else None) or ""))


@router.post("/query", response_model=list[SeriesOut | TableOut])
async def query(ctx: ContextDep, principal: PrincipalDep, body: QueryIn) -> JSONBytes:
    """Series (``[value, epoch ms]``, ascending, down-sampled in the store) and tables.

    A target that names nothing the key may see gives no element; a series target with
    ``type: table`` gives one table of its buckets. One request may name at most 500
    series and return at most 200,000 points and 8 MiB (422 naming the limit otherwise);
    its cost (series, points, readings read) is charged to the key's rate budget.
    """
    filters = [*compile_filters(body.adhocFilters), *compile_filters(body.filters, "filters")]
    view = await view_of(ctx, principal.scope, filters)
    window = window_of(body.range, ctx.clock, interval_ms=body.intervalMs, max_points=body.maxDataPoints)
    budget = QueryBudget()
    try:
        out = await _answer(view, body, window, budget)
        rendered = JSONBytes(out)
        budget.check_response(len(rendered.body))
    finally:
        ctx.limits.charge(principal.key_id, budget.cost - 1)  # the first request unit is already taken
    return rendered


async def _answer(view: View, body: QueryIn, window: Window, budget: QueryBudget) -> list[dict[str, Any]]:
    """Every target's elements; the event loop serves other requests between two store reads."""
    parsed_targets = [
        (target, parse_target(target.target, target.payload if target.payload is not None else target.data))
        for target in body.targets
        if not target.hide
    ]
    plans = {
        index: plan(view, parsed)
        for index, (_, parsed) in enumerate(parsed_targets)
        if isinstance(parsed, SeriesTarget)
    }
    budget.plan_series(sum(len(found) for found in plans.values()))  # refused before any read
    out: list[dict[str, Any]] = []
    for index, (target, parsed) in enumerate(parsed_targets):
        if isinstance(parsed, TableTarget):
            result = await table(view, parsed, window)
            budget.spend_points(len(result.rows))
            out.append(_table_json(target.refId, result.columns, result.positional()))
            await asyncio.sleep(0)
            continue
        series = []
        for planned in plans.get(index, []):
            data = await fetch(view, planned, window)
            budget.spend_points(len(data.buckets), sum(bucket.count for bucket in data.buckets))
            series.append(data)
            await asyncio.sleep(0)
        if not isinstance(parsed, SeriesTarget):
            continue
        if (target.type or "").lower() == "table":
            out.append(_table_json(target.refId, *series_table(series, window)))
        else:
            out += [
                {"target": s.name, "refId": target.refId, "datapoints": s.datapoints(window)} for s in series
            ]
    return out


def _annotation_scope(view: View, parsed: SeriesTarget | TableTarget | None) -> dict[str, Any] | None:
    """anomaly_rows arguments for an annotation query; None when it names nothing visible."""
    if parsed is None:
        return {}
    if isinstance(parsed, TableTarget):
        if parsed.name != "anomalies":
            return None
        p = parsed.params
        return {
            "client_ids": split_values(p.get("client_id")),
            "object_ids": split_values(p.get("object_id")),
            "metrics": split_values(p.get("metric")),
            "rule": p.get("rule") or None,
            "state": p.get("state") or "all",
        }
    if parsed.subjects is None:
        return {"metrics": parsed.metrics}
    objects = [s for s in parsed.subjects if s in view.by_id]
    clients = [s for s in parsed.subjects if s not in view.by_id and s in view.clients]
    objects += [obj.id for obj in view.select_objects(client_ids=clients)] if clients else []
    return {"object_ids": objects, "metrics": parsed.metrics} if objects else None


@router.post("/annotations", response_model=list[AnnotationOut])
async def annotations(ctx: ContextDep, principal: PrincipalDep, body: AnnotationsIn) -> JSONBytes:
    """Anomaly events overlapping the range; ``annotation.query`` narrows them.

    The query is empty or ``*`` (every event), a series target's subject and metric
    (``device_1``, ``client_1.humidity``, ``(device_1|device_2)``) or
    ``anomalies?client_id=...&state=open``.
    """
    view = await view_of(ctx, principal.scope)
    window = window_of(body.range, ctx.clock)
    text = body.annotation.query.strip()
    scope = _annotation_scope(view, parse_target(text) if text and text != "*" else None)
    if scope is None:
        return JSONBytes([])
    echo = body.annotation.model_dump()
    events = []
    for row in await anomaly_rows(view, window, limit=_ANNOTATION_LIMIT, **scope):
        event: dict[str, Any] = {
            "annotation": echo,
            "time": row["time"],
            "title": row["title"],
            "text": row["text"],
            "tags": row["tags"].split(","),
        }
        if row["timeEnd"] is not None:
            event.update(timeEnd=row["timeEnd"], isRegion=True)
        events.append(event)
    return JSONBytes(events)


@router.post("/tag-keys", response_model=list[TagKeyOut])
async def tag_keys(principal: PrincipalDep) -> JSONBytes:
    """Ad-hoc filter keys: client, object, metric, type."""
    return JSONBytes([{"type": "string", "text": key} for key in TAG_KEYS])


@router.post("/tag-values", response_model=list[TagValueOut])
async def tag_values(ctx: ContextDep, principal: PrincipalDep, body: TagValuesIn) -> JSONBytes:
    """Values of one ad-hoc filter key that the key may see."""
    values = catalogue.tag_values(await view_of(ctx, principal.scope), body.key)
    return JSONBytes([{"text": value} for value in values])


@router.post("/metrics", response_model=list[MetricOut])
async def metrics(principal: PrincipalDep, body: Annotated[MetricsIn | None, Body()] = None) -> JSONBytes:
    """simPod's query builder: the targets and their payload fields."""
    return JSONBytes(catalogue.metric_options())


@router.post("/metric-payload-options", response_model=list[PayloadOptionOut])
async def metric_payload_options(
    ctx: ContextDep, principal: PrincipalDep, body: PayloadOptionsIn
) -> JSONBytes:
    """simPod's query builder: options of one payload select."""
    view = await view_of(ctx, principal.scope)
    return JSONBytes(catalogue.payload_options(view, body.name, parse_payload(body.payload)))


@router.post("/variable", response_model=list[VariableOptionOut])
async def variable(ctx: ContextDep, principal: PrincipalDep, body: VariableIn) -> JSONBytes:
    """simPod's template variables: ``payload.target`` is a finder query or search text."""
    view = await view_of(ctx, principal.scope)
    if isinstance(body.payload, str):
        target, extra = body.payload, {}
    else:
        extra = parse_payload(body.payload)
        target = str(extra.pop("target", "") or "")
    values = catalogue.find(view, target, extra)
    if values is None:
        values = catalogue.search(view, target)
    return JSONBytes([{"__text": value, "__value": value} for value in values])
