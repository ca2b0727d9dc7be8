"""A fast lane for the two hot statistics GETs, with the routes' exact bytes, before FastAPI's stack.

``GET /processed_data`` and ``GET /client_statistics`` spend most of their time in FastAPI's
routing, dependency solving and the middleware layers around them, not in their work.
:class:`ShortLane` is called by the app before any of that (:class:`EdgeAPI`) and answers a
plain request itself with the very functions the routes call:
:func:`iotedge.edge.deps.admit`, :func:`iotedge.edge.deps.time_range`, and the routes' answer
builders. It does what the app's middlewares would do to the same request: the security
headers (:func:`iotedge.edge.hardening.security_headers`), the request counters and
durations (:meth:`iotedge.edge.metrics.EdgeMetrics.observe_http`), and the 500 of
Starlette's ``ServerErrorMiddleware`` if something breaks.

Anything unusual goes on to FastAPI untouched, *before* any side effect (the failure cap and
budgets): another method, an unknown, repeated, empty or over-long parameter, a missing
``object_id``, a repeated ``x-api-key`` header, a request body, a URL over the size limit.
Errors after admission (401, 404, 422, 429, 503) are rendered by the app's own exception
handlers, so their bodies are the routes' too. ``tests/security/test_fast_lane.py`` compares
both paths byte for byte, with the same request counters.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl

from fastapi import FastAPI
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from iotedge.edge.api.processed import client_statistics_answer, processed_data_answer
from iotedge.edge.auth import Principal
from iotedge.edge.context import EdgeContext
from iotedge.edge.deps import TimeRange, admit, time_range
from iotedge.edge.hardening import security_headers, with_security_headers
from iotedge.edge.metrics import EdgeMetrics
from iotedge.edge.metrics_http import CLIENT_CLOSED
from iotedge.errors import AuthError, BadRequest, NotFound, RateLimited, StoreError

__all__ = ["EdgeAPI", "ShortLane"]


@dataclass(frozen=True)
class _Route:
    """What the request metrics read from ``scope["route"]``: the route's template."""

    path: str


_Answer = Callable[[EdgeContext, Principal, TimeRange, dict[str, str]], Awaitable[bytes | Response]]

# Each route's query parameters and their max_length, as the routes declare them.
_WINDOW = {"window": 20, "from": 40, "to": 40}
_PROCESSED = {**_WINDOW, "object_id": 200, "metric": 40}
_CLIENTS = {**_WINDOW, "client_id": 200}
_HANDLED = (AuthError, RateLimited, NotFound, BadRequest, StoreError)
_BODY_HEADERS = (b"content-length", b"transfer-encoding")
_LANE = "iotedge.lane"  # the scope key of what the lane found out about a request
_STARTED = "iotedge.lane.started"  # set as the lane begins to send its answer
_JSON = (b"content-type", b"application/json")  # a 200's headers as TrustedJSON sets them


async def _processed(
    ctx: EdgeContext, principal: Principal, window: TimeRange, params: dict[str, str]
) -> bytes | Response:
    return await processed_data_answer(ctx, principal, window, params["object_id"], params.get("metric"))


async def _clients(
    ctx: EdgeContext, principal: Principal, window: TimeRange, params: dict[str, str]
) -> bytes:
    return await client_statistics_answer(ctx, principal, window, params.get("client_id"))


_LANES: dict[str, tuple[dict[str, int], frozenset[str], _Answer]] = {
    "/processed_data": (_PROCESSED, frozenset({"object_id"}), _processed),
    "/client_statistics": (_CLIENTS, frozenset(), _clients),
}


def _plain_params(query: bytes, allowed: dict[str, int], required: frozenset[str]) -> dict[str, str] | None:
    """The parameters when each is known, given once, non-empty and short enough; else None.

    Parsed as Starlette's ``QueryParams`` parses them (latin-1, blank values kept).
    """
    params: dict[str, str] = {}
    for name, value in _pairs(query.decode("latin-1")):
        limit = allowed.get(name)
        if limit is None or name in params or not value or len(value) > limit:
            return None
        params[name] = value
    return params if required <= params.keys() else None


def _pairs(text: str) -> list[tuple[str, str]]:
    """``parse_qsl(text, keep_blank_values=True)``, split by hand when nothing is to unquote."""
    if "%" in text or "+" in text:
        return parse_qsl(text, keep_blank_values=True)
    return [(name, value) for name, _, value in (pair.partition("=") for pair in text.split("&") if pair)]


def _api_key(scope: Scope) -> tuple[bool, str | None]:
    """(plain, key): not plain with a repeated key header or a body; key None when absent or empty."""
    found: list[bytes] = []
    for name, value in scope["headers"]:
        if name == b"x-api-key":
            found.append(value)
        elif name in _BODY_HEADERS:
            return False, None
    if len(found) > 1:
        return False, None
    return True, (found[0].decode("latin-1") or None) if found else None


class ShortLane:
    """Answers plain statistics GETs for ``app``; every other request is left to it.

    Args:
        app: the edge app (its exception handlers render the errors).
        metrics: where the app's metrics middleware counts requests.
        max_url: the security middleware's URL limit (a longer URL is left to it).
    """

    def __init__(self, app: FastAPI, metrics: EdgeMetrics, max_url: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_url = max_url
        self._handler = next((h for k, h in app.exception_handlers.items() if k in (500, Exception)), None)
        self._headers: dict[tuple[str, bool], list[tuple[bytes, bytes]]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Answer the request if it is plain; False (nothing read or sent) when it is not."""
        if scope["type"] != "http" or scope["method"] != "GET":
            return False
        path: str = scope["path"]
        lane = _LANES.get(path)
        state = scope.get("state")
        ctx = state.get("ctx") if state else None
        if lane is None or not isinstance(ctx, EdgeContext) or not ctx.settings.fast_lane:
            return False
        allowed, required, answer = lane
        query: bytes = scope["query_string"]
        if len(scope.get("raw_path") or path.encode()) + len(query) > self.max_url:
            return False
        params = _plain_params(query, allowed, required)
        plain, key = _api_key(scope)
        if params is None or not plain:
            return False
        scope["app"] = self.app
        scope["route"] = _Route(path)
        scope[_LANE] = (ctx, params, key, answer)
        try:
            await self._answer(scope, receive, send)
        except Exception as exc:  # noqa: BLE001 - the guard re-raises it
            # What Starlette's ServerErrorMiddleware around the app does, without wrapping the
            # ``send`` of every answer: the app's 500 unless the answer has begun, and re-raised.
            failed = _raising(exc)
            guard = ServerErrorMiddleware(failed, handler=self._handler, debug=self.app.debug)
            await guard(scope, receive, _discard if scope.get(_STARTED) else send)
        return True

    async def _answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The request's answer, counted as the metrics middleware counts it."""
        started = time.perf_counter()
        ctx, params, key, answer = scope[_LANE]
        status: int | None = None
        try:
            client = scope.get("client")
            try:
                principal = admit(ctx.keys, ctx.limits, key, client[0] if client else "unknown")
                window = await time_range(ctx, params.get("window"), params.get("from"), params.get("to"))
                response = await answer(ctx, principal, window, params)
            except _HANDLED as exc:
                response = await _handled(scope, receive, exc)
            ours = self._security_headers(scope)
            if isinstance(response, bytes):  # what TrustedJSON(response) would send, built directly
                status, body = 200, response
                headers = [(b"content-length", str(len(body)).encode("latin-1")), _JSON, *ours]
            else:
                status, body = response.status_code, response.body
                headers = with_security_headers(response.raw_headers, ours)
            scope[_STARTED] = True
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        except asyncio.CancelledError:
            status = status or CLIENT_CLOSED
            raise
        finally:
            elapsed = time.perf_counter() - started
            self.metrics.observe_http(scope["route"].path, "GET", status or 500, elapsed)

    def _security_headers(self, scope: Scope) -> list[tuple[bytes, bytes]]:
        """:func:`security_headers` of the request, worked out once per path and scheme (not
        to be changed: the answers share it)."""
        key = (scope["path"], scope.get("scheme") == "https")
        ours = self._headers.get(key)
        if ours is None:
            ours = self._headers[key] = security_headers(scope)
        return ours


def _raising(exc: Exception) -> ASGIApp:
    """An app that raises ``exc``."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise exc

    return app


async def _discard(message: Message) -> None:
    """A ``send`` that sends nothing (the answer has begun: no 500 after it)."""


async def _handled(scope: Scope, receive: Receive, exc: Exception) -> Response:
    """The app's own answer to ``exc`` (its registered exception handler)."""
    handlers: dict[type[Exception], Callable[[Request, Exception], Awaitable[Response]]]
    handlers = scope["app"].exception_handlers
    for kind in type(exc).__mro__:
        handler = handlers.get(kind)
        if handler is not None:
            return await handler(Request(scope, receive), exc)
    raise exc


class EdgeAPI(FastAPI):
    """The edge's FastAPI app: plain statistics GETs go to its :attr:`short_lane` first."""

    short_lane: ShortLane | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one connection event."""
        lane = self.short_lane
        if lane is None or not await lane(scope, receive, send):
            await super().__call__(scope, receive, send)
