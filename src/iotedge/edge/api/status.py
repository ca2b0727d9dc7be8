"""``GET /status``: the edge's own state, scoped by the key, for the web console.

One call gives what the console's status view and charts need besides the data: collector
and device API health (with the circuit breaker), store size, notification counts (the
pending backlog is shown to the cloud key only), the container gauges, the metric units
and the rule thresholds.
"""

import math
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from iotedge.edge.container import ContainerSample
from iotedge.edge.deps import ContextDep, PrincipalDep
from iotedge.edge.timefmt import iso_utc
from iotedge.specs import METRICS

router = APIRouter(tags=["status"])

ContainerProbe = Callable[[], ContainerSample | None]

_COUNTED_ROWS = 1000


class CollectorOut(BaseModel):
    """The polling loop's health."""

    ok: bool
    cycles: int
    last_success_at: str | None
    last_cycle_seconds: float
    readings_ingested: int
    store_error: str | None


class UpstreamOut(BaseModel):
    """The device API as the edge sees it; ``circuit`` is closed, open or half_open."""

    ok: bool
    consecutive_failures: int
    last_error: str | None
    circuit: str


class NotificationCountsOut(BaseModel):
    """Deliveries of the key's clients by status; ``pending`` only for the cloud key."""

    channels: list[str]
    by_status: dict[str, int]
    pending: int | None


class GaugesOut(BaseModel):
    """The course's container gauges (percent of the limit, or of the host without one)."""

    cpu_percent: float | None
    memory_percent: float | None
    memory_bytes: int
    disk_percent: float | None
    disk_used_bytes: int


class ThresholdOut(BaseModel):
    """A threshold rule, drawn as a line on the console's charts."""

    metric: str
    name: str
    above: float | None
    below: float | None


class StatusOut(BaseModel):
    """The edge's state for one key."""

    edge_id: str
    now: str
    scope: str
    poll_interval_seconds: float
    stale_after_seconds: float
    collector: CollectorOut
    upstream: UpstreamOut
    store: dict[str, int]
    notifications: NotificationCountsOut
    container: GaugesOut | None
    units: dict[str, str]
    thresholds: list[ThresholdOut]


def _finite(value: float) -> float | None:
    return round(value, 2) if math.isfinite(value) else None


def _gauges(sample: ContainerSample | None) -> dict[str, Any] | None:
    if sample is None:
        return None
    return {
        "cpu_percent": _finite(sample.cpu_percent),
        "memory_percent": _finite(sample.memory_percent),
        "memory_bytes": sample.memory_bytes,
        "disk_percent": _finite(sample.disk_percent),
        "disk_used_bytes": sample.disk_used_bytes,
    }


@router.get("/status", response_model=StatusOut)
async def status(request: Request, ctx: ContextDep, principal: PrincipalDep) -> dict[str, Any]:
    """Collector, device API, store, notifications and container state, for this key."""
    health = ctx.collector.health
    scope = principal.scope
    rows = await ctx.notification_rows(None if scope is None else set(scope), _COUNTED_ROWS)
    by_status: dict[str, int] = {}
    for row in rows:
        by_status[row.status] = by_status.get(row.status, 0) + 1
    probe: ContainerProbe | None = getattr(request.state, "container", None)
    return {
        "edge_id": ctx.edge_id,
        "now": iso_utc(ctx.clock()),
        "scope": "*" if scope is None else principal.client,
        "poll_interval_seconds": ctx.settings.poll_interval,
        "stale_after_seconds": ctx.settings.stale_after,
        "collector": {
            "ok": health.ok,
            "cycles": health.cycles,
            "last_success_at": None if health.last_success_at is None else iso_utc(health.last_success_at),
            "last_cycle_seconds": round(health.last_cycle_seconds, 3),
            "readings_ingested": health.readings_ingested,
            "store_error": health.store_error,
        },
        "upstream": {
            "ok": health.ok and health.consecutive_failures == 0,
            "consecutive_failures": health.consecutive_failures,
            "last_error": health.last_error,
            "circuit": ctx.upstream.breaker.state,
        },
        "store": {"size_bytes": await ctx.store.size_bytes()},
        "notifications": {
            "channels": list(ctx.drainer.settings.enabled_channels()) if ctx.drainer is not None else [],
            "by_status": by_status,
            "pending": await ctx.notifications_pending() if scope is None else None,
        },
        "container": _gauges(probe() if probe is not None else None),
        "units": {key: spec.unit for key, spec in METRICS.items()},
        "thresholds": [
            {"metric": rule.metric, "name": rule.name, "above": rule.above, "below": rule.below}
            for rule in ctx.engine.rules.thresholds
        ],
    }
