"""Request dependencies: the edge context, the caller's principal, time windows."""

from typing import Annotated

from fastapi import Depends, Query, Request, Security
from fastapi.security import APIKeyHeader

from iotedge.edge.auth import KeySource, Principal
from iotedge.edge.context import EdgeContext
from iotedge.edge.ratelimit import RateLimits
from iotedge.edge.store import ObjectRow
from iotedge.edge.timefmt import iso_utc, parse_instant, parse_window
from iotedge.errors import AuthError, BadRequest, NotFound
from iotedge.specs import DEVICE_TYPES

__all__ = [
    "ContextDep",
    "OptionalPrincipalDep",
    "PrincipalDep",
    "TimeRange",
    "TimeRangeDep",
    "admit",
    "visible_object_metric",
]

MAX_SPAN_S = 31 * 86400.0
DEFAULT_WINDOW_S = 3600.0

_api_key = APIKeyHeader(name="x-api-key", auto_error=False, description="Your client's API key.")


async def get_context(request: Request) -> EdgeContext:
    """The running edge's context."""
    context: EdgeContext = request.state.ctx
    return context


ContextDep = Annotated[EdgeContext, Depends(get_context)]


def admit(keys: KeySource, limits: RateLimits, key: str | None, address: str) -> Principal:
    """The whole check of a request: the address's failure cap, the key, then the key's budget.

    Raises:
        RateLimited: the address or the key is over its budget (HTTP 429).
        AuthError: the key is missing or invalid (HTTP 401); counted against the address.
    """
    limits.check_address(address)
    try:
        principal = keys.authenticate(key)
    except AuthError:
        limits.auth_failed(address)
        raise
    limits.check_key(principal.key_id)
    return principal


async def authenticate(
    request: Request, ctx: ContextDep, key: Annotated[str | None, Security(_api_key)]
) -> Principal:
    """The caller's principal: AuthError (401) for a missing or invalid key, RateLimited (429)."""
    address = request.client.host if request.client else "unknown"
    return admit(ctx.keys, ctx.limits, key, address)


# Dependencies are async on purpose: they only touch memory, and FastAPI would otherwise run
# each sync one in its thread pool (measured: 2,032 -> 3,337 req/s on /processed_data).
PrincipalDep = Annotated[Principal, Depends(authenticate)]


async def authenticate_if_sent(
    request: Request, ctx: ContextDep, key: Annotated[str | None, Security(_api_key)]
) -> Principal | None:
    """The caller's principal when a key is sent, None without one; a bad key is still a 401."""
    return None if key is None else await authenticate(request, ctx, key)


OptionalPrincipalDep = Annotated[Principal | None, Depends(authenticate_if_sent)]


class TimeRange:
    """A [since, until) window in epoch seconds, from ``window`` or ``from``/``to``."""

    def __init__(self, since: float, until: float) -> None:
        self.since = since
        self.until = until

    def as_json(self) -> dict[str, float | str]:
        """The ``window`` object of responses."""
        return {
            "from": iso_utc(self.since),
            "to": iso_utc(self.until),
            "seconds": round(self.until - self.since, 3),
        }


async def time_range(
    ctx: ContextDep,
    window: Annotated[str | None, Query(max_length=20, description="e.g. 15m, 1h, 7d (default 1h).")] = None,
    from_: Annotated[
        str | None, Query(alias="from", max_length=40, description="Epoch s or ms, or ISO 8601.")
    ] = None,
    to: Annotated[str | None, Query(max_length=40, description="Epoch s or ms, or ISO 8601.")] = None,
) -> TimeRange:
    """Resolve the request's time window (``from``/``to`` win over ``window``)."""
    now = ctx.clock()
    until = parse_instant("to", to) if to else now
    if from_:
        since = parse_instant("from", from_)
    else:
        since = until - (parse_window("window", window, maximum=MAX_SPAN_S) if window else DEFAULT_WINDOW_S)
    if since >= until:
        raise BadRequest("from", "must be before 'to'")
    if until - since > MAX_SPAN_S:
        raise BadRequest("from", f"the window may span at most {MAX_SPAN_S / 86400:g} days")
    # The upper bound is inclusive of "now": readings stamped this very second count.
    return TimeRange(since, until + 1e-6)


TimeRangeDep = Annotated[TimeRange, Depends(time_range)]


async def visible_object_metric(
    ctx: EdgeContext, principal: Principal, object_id: str, metric: str | None
) -> tuple[ObjectRow, str]:
    """The object if ``principal`` may see it, and the metric asked for (default: primary).

    Raises:
        NotFound: the object does not exist *for this principal* (same answer either way).
        BadRequest: the object's type does not measure ``metric``.
    """
    obj = await ctx.store.object(object_id, principal.scope)
    if obj is None:
        raise NotFound("Object not found")
    kinds = DEVICE_TYPES[obj.type].metrics
    chosen = metric or kinds[0]
    if chosen not in kinds:
        raise BadRequest("metric", f"{obj.type} measures {', '.join(kinds)}")
    return obj, chosen
