"""A pure-ASGI fast lane for the two hot statistics GETs, with the routes' exact bytes.

``GET /processed_data`` and ``GET /client_statistics`` spend most of their time in FastAPI's
routing and dependency solving, not in their work. This middleware sits inside the security
and metrics middlewares (so headers, size limits and counters are theirs) and answers a
plain request itself with the very functions the routes call: :func:`iotedge.edge.deps.admit`,
:func:`iotedge.edge.deps.time_range`, and the routes' answer builders.

Anything unusual goes on to FastAPI untouched, *before* any side effect (the failure cap and
budgets): another method, an unknown, repeated, empty or over-long parameter, a missing
``object_id``, a repeated ``x-api-key`` header. Errors after admission (401, 404, 422, 429,
503) are rendered by the app's own exception handlers, so their bodies are the routes' too.
``tests/security/test_fast_lane.py`` compares both paths byte for byte.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from iotedge.edge.api.processed import client_statistics_answer, processed_data_answer
from iotedge.edge.auth import Principal
from iotedge.edge.context import EdgeContext
from iotedge.edge.deps import TimeRange, admit, time_range
from iotedge.errors import AuthError, BadRequest, NotFound, RateLimited, StoreError

__all__ = ["FastLane"]


@dataclass(frozen=True)
class _Route:
    """What :class:`~iotedge.edge.metrics_http.MetricsMiddleware` reads from ``scope["route"]``."""

    path: str


_Answer = Callable[[EdgeContext, Principal, TimeRange, dict[str, str]], Awaitable[Response]]

# Each route's query parameters and their max_length, as the routes declare them.
_WINDOW = {"window": 20, "from": 40, "to": 40}
_PROCESSED = {**_WINDOW, "object_id": 200, "metric": 40}
_CLIENTS = {**_WINDOW, "client_id": 200}
_HANDLED = (AuthError, RateLimited, NotFound, BadRequest, StoreError)


async def _processed(
    ctx: EdgeContext, principal: Principal, window: TimeRange, params: dict[str, str]
) -> Response:
    return await processed_data_answer(ctx, principal, window, params["object_id"], params.get("metric"))


async def _clients(
    ctx: EdgeContext, principal: Principal, window: TimeRange, params: dict[str, str]
) -> Response:
    return await client_statistics_answer(ctx, principal, window, params.get("client_id"))


_LANES: dict[str, tuple[dict[str, int], frozenset[str], _Answer]] = {
    "/processed_data": (_PROCESSED, frozenset({"object_id"}), _processed),
    "/client_statistics": (_CLIENTS, frozenset(), _clients),
}


def _plain_params(query: bytes, allowed: dict[str, int], required: frozenset[str]) -> dict[str, str] | None:
    """The parameters when each is known, given once, non-empty and short enough; else None."""
    params: dict[str, str] = {}
    for name, value in QueryParams(query).multi_items():
        limit = allowed.get(name)
        if limit is None or name in params or not value or len(value) > limit:
            return None
        params[name] = value
    return params if required <= params.keys() else None


def _api_key(scope: Scope) -> tuple[bool, str | None]:
    """(plain, key): not plain when the header is repeated; key None when absent or empty."""
    found: list[bytes] = [value for name, value in scope["headers"] if name == b"x-api-key"]
    if len(found) > 1:
        return False, None
    return True, (found[0].decode("latin-1") or None) if found else None


class FastLane:
    """Answers plain statistics GETs directly; passes every other request to ``app``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one connection event."""
        lane = _LANES.get(scope.get("path", "")) if scope["type"] == "http" else None
        state = scope.get("state") or {}
        ctx = state.get("ctx")
        if lane is None or scope["method"] != "GET" or not isinstance(ctx, EdgeContext):
            await self.app(scope, receive, send)
            return
        allowed, required, answer = lane
        params = _plain_params(scope.get("query_string", b""), allowed, required)
        plain, key = _api_key(scope)
        if params is None or not plain or not ctx.settings.fast_lane:
            await self.app(scope, receive, send)
            return
        scope["route"] = _Route(scope["path"])  # the metrics' route label, as the router sets it
        client = scope.get("client")
        try:
            principal = admit(ctx.keys, ctx.limits, key, client[0] if client else "unknown")
            window = await time_range(ctx, params.get("window"), params.get("from"), params.get("to"))
            response = await answer(ctx, principal, window, params)
        except _HANDLED as exc:
            response = await _handled(scope, receive, exc)
        await response(scope, receive, send)


async def _handled(scope: Scope, receive: Receive, exc: Exception) -> Response:
    """The app's own answer to ``exc`` (its registered exception handler)."""
    handlers: dict[type[Exception], Callable[[Request, Exception], Awaitable[Response]]]
    handlers = scope["app"].exception_handlers
    for kind in type(exc).__mro__:
        handler = handlers.get(kind)
        if handler is not None:
            return await handler(Request(scope, receive), exc)
    raise exc
