"""Liveness and readiness probes (no key needed)."""

import re
from typing import Any

from fastapi import APIRouter

from iotedge import __version__
from iotedge.edge.deps import ContextDep, OptionalPrincipalDep
from iotedge.web import JSONBytes

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz(ctx: ContextDep) -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok", "edge_id": ctx.edge_id, "version": __version__}


_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")


def _shown(error: str | None, *, keyed: bool) -> str | None:
    """An error message as shown: callers without a key do not see the internal URLs in it."""
    if error is None or keyed:
        return error
    return _URL.sub("<hidden: send an API key>", error)


@router.get("/readyz", responses={503: {"description": "Not ready: see the checks."}})
async def readyz(ctx: ContextDep, principal: OptionalPrincipalDep) -> JSONBytes:
    """Ready when the store is writable and the device API answered recently.

    Without a key the error messages leave out internal URLs (the device API's address).
    """
    keyed = principal is not None
    health = ctx.collector.health
    now = ctx.clock()
    recent = max(3 * ctx.settings.poll_interval, ctx.settings.stale_after)
    upstream_ok = health.last_success_at is not None and now - health.last_success_at <= recent
    store_ok = ctx.store.writable() and health.store_error is None
    body: dict[str, Any] = {
        "ready": store_ok and upstream_ok,
        "edge_id": ctx.edge_id,
        "checks": {
            "store": {"ok": store_ok, "last_error": _shown(health.store_error, keyed=keyed)},
            "upstream": {
                "ok": upstream_ok,
                "last_success_age_seconds": None
                if health.last_success_at is None
                else round(now - health.last_success_at, 3),
                "consecutive_failures": health.consecutive_failures,
                "last_error": _shown(health.last_error, keyed=keyed),
                "circuit": ctx.upstream.breaker.state,
            },
        },
    }
    return JSONBytes(body, status_code=200 if body["ready"] else 503)
