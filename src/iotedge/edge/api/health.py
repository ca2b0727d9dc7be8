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
    """Ready when the store is writable and the device API answered recently; `failing` names what is not."""
    health = ctx.collector.health
    now = ctx.clock()
    recent = max(3 * ctx.settings.poll_interval, ctx.settings.stale_after)
    answered = health.upstream_ok_at
    upstream_ok = answered is not None and now - answered <= recent
    store_ok = ctx.store.writable() and health.store_error is None
    body: dict[str, Any] = {
        "ready": store_ok and upstream_ok,
        "failing": [name for name, ok in (("store", store_ok), ("upstream", upstream_ok)) if not ok],
        "edge_id": ctx.edge_id,
        "checks": {
            "store": {"ok": store_ok, "last_error": health.store_error},
            "upstream": {
                "ok": upstream_ok,
                "last_success_age_seconds": None if answered is None else round(now - answered, 3),
                "consecutive_failures": health.consecutive_failures,
                "last_error": health.last_error,
                "circuit": ctx.upstream.breaker.state,
            },
        },
    }
    return JSONBytes(body, status_code=200 if body["ready"] else 503)
