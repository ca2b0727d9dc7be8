"""Liveness and readiness probes (no key needed)."""

from typing import Any

from fastapi import APIRouter

from iotedge import __version__
from iotedge.edge.deps import ContextDep
from iotedge.web import JSONBytes

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz(ctx: ContextDep) -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok", "edge_id": ctx.edge_id, "version": __version__}


@router.get("/readyz", responses={503: {"description": "Not ready: see the checks."}})
async def readyz(ctx: ContextDep) -> JSONBytes:
    """Ready when the store is writable and the device API answered recently."""
    health = ctx.collector.health
    now = ctx.clock()
    recent = max(3 * ctx.settings.poll_interval, ctx.settings.stale_after)
    upstream_ok = health.last_success_at is not None and now - health.last_success_at <= recent
    store_ok = ctx.store.writable() and health.store_error is None
    body: dict[str, Any] = {
        "ready": store_ok and upstream_ok,
        "edge_id": ctx.edge_id,
        "checks": {
            "store": {"ok": store_ok, "last_error": health.store_error},
            "upstream": {
                "ok": upstream_ok,
                "last_success_age_seconds": None
                if health.last_success_at is None
                else round(now - health.last_success_at, 3),
                "consecutive_failures": health.consecutive_failures,
                "last_error": health.last_error,
                "circuit": ctx.upstream.breaker.state,
            },
        },
    }
    if ctx.mqtt is not None:  # informative: a broker outage never makes the edge unready
        body["checks"]["mqtt"] = ctx.mqtt.health.as_json(now)
    return JSONBytes(body, status_code=200 if body["ready"] else 503)
