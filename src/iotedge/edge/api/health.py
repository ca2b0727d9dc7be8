"""Liveness and readiness probes (no key needed)."""

import asyncio
import re
from typing import Any

from fastapi import APIRouter, Request

from iotedge import __version__
from iotedge.edge.context import EdgeContext
from iotedge.edge.deps import ContextDep, admit
from iotedge.edge.http_errors import STORE_RETRY_AFTER_S
from iotedge.errors import IotedgeError, StoreError
from iotedge.web import JSONBytes

router = APIRouter(tags=["health"])

_STORE_CHECK_S = 2.0  # longest /readyz waits for the store


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


def _keyed(request: Request, ctx: EdgeContext) -> bool:
    """Whether the caller sent a valid key (the probe itself needs none: no 401 here)."""
    key = request.headers.get("x-api-key")
    if key is None:
        return False
    address = request.client.host if request.client else "unknown"
    try:
        admit(ctx.keys, ctx.limits, key, address)
    except IotedgeError:
        return False
    return True


@router.get("/readyz", responses={503: {"description": "Cannot serve: see `failing`."}})
async def readyz(request: Request, ctx: ContextDep) -> JSONBytes:
    """Ready when this process can serve: started (first poll cycle done) and its store writable.

    The device API's health is in the body (``checks.upstream``, and ``degraded`` lists it when
    it is failing) but never makes the edge unready: when the device API is down is exactly when
    the edge should go on serving what it has, so no replica may leave the Service for it.
    Without a key the error messages leave out internal URLs (the device API's address).
    """
    keyed = _keyed(request, ctx)
    health = ctx.collector.health
    now = ctx.clock()
    recent = max(3 * ctx.settings.poll_interval, ctx.settings.stale_after)
    answered = health.upstream_ok_at
    upstream_ok = answered is not None and now - answered <= recent
    polling = ctx.settings.role != "api"
    started = health.cycles > 0 or not polling  # the api role is started once it serves
    try:
        # Bounded: a store that does not answer makes this process unready, not the probe hang.
        writable = await asyncio.wait_for(ctx.store.writable(), _STORE_CHECK_S)
        store_error = health.store_error
    except StoreError as exc:
        writable, store_error = False, str(exc)
    except TimeoutError:
        writable, store_error = False, f"the store did not answer within {_STORE_CHECK_S:g} s"
    if not writable and store_error is None:
        store_error = "the store takes no writes now"
    store_ok = writable and health.store_error is None
    failing = [name for name, ok in (("started", started), ("store", store_ok)) if not ok]
    body: dict[str, Any] = {
        "ready": not failing,
        "failing": failing,
        "degraded": [] if upstream_ok else ["upstream"],
        "edge_id": ctx.edge_id,
        "checks": {
            "started": {"ok": started, "cycles": health.cycles},
            "store": {"ok": store_ok, "last_error": _shown(None if store_ok else store_error, keyed=keyed)},
            "upstream": {
                "ok": upstream_ok,
                "last_success_age_seconds": None if answered is None else round(now - answered, 3),
                "consecutive_failures": health.consecutive_failures,
                "last_error": _shown(health.last_error, keyed=keyed),
                "circuit": ctx.upstream.breaker.state,
            },
        },
    }
    if not polling:  # the device API is the collectors' business, not this process's
        body["degraded"] = [name for name in body["degraded"] if name != "upstream"]
        del body["checks"]["upstream"]
        body["role"] = ctx.settings.role
    leases = getattr(ctx.collector.shards, "status", None)
    if polling and callable(leases):  # informative: which shards this collector holds (PostgreSQL)
        body["checks"]["shards"] = leases()
    if ctx.mqtt is not None:  # informative, like the device API: a broker outage never makes the edge unready
        body["checks"]["mqtt"] = ctx.mqtt.health.as_json(now)
        if not body["checks"]["mqtt"].get("ok", True):
            body["degraded"].append("mqtt")
    if body["ready"]:
        return JSONBytes(body)
    return JSONBytes(body, status_code=503, headers={"Retry-After": str(STORE_RETRY_AFTER_S)})
