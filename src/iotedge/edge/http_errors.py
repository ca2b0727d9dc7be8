"""The one place that maps iotedge errors to HTTP status codes and JSON bodies."""

import logging

from fastapi import FastAPI, Request
from starlette.responses import Response

from iotedge.errors import (
    AuthError,
    BadRequest,
    NotFound,
    RateLimited,
    StoreError,
    StoreUnavailable,
    UpstreamError,
)
from iotedge.web import error_response, install_json_errors

__all__ = ["STORE_RETRY_AFTER_S", "install_error_handlers"]

STORE_RETRY_AFTER_S = 5
"""Seconds a client is told to wait (``Retry-After``) when the store does not answer."""

_log = logging.getLogger(__name__)


def install_error_handlers(app: FastAPI) -> None:
    """Register JSON handlers for framework errors and every iotedge error."""
    install_json_errors(app)

    async def auth(request: Request, exc: Exception) -> Response:
        # The course's exact body; the reason stays in the log, never in the response.
        _log.info("401 on %s: %s", request.url.path, exc)
        return error_response(401, "Unauthorized")

    async def not_found(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, NotFound)  # noqa: S101 - registered for that type
        return error_response(404, exc.what, exc.detail)

    async def bad_request(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, BadRequest)  # noqa: S101 - registered for that type
        detail = [{"parameter": exc.parameter, "in": exc.location, "message": exc.message}]
        return error_response(422, "Invalid request parameters", detail)

    async def rate_limited(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RateLimited)  # noqa: S101 - registered for that type
        retry = max(1, round(exc.retry_after + 0.5))
        return error_response(429, "Too Many Requests", headers={"Retry-After": str(retry)})

    async def store_error(request: Request, exc: Exception) -> Response:
        _log.error("store error on %s: %s", request.url.path, exc)
        return error_response(503, "Store unavailable", headers={"Retry-After": str(STORE_RETRY_AFTER_S)})

    async def store_unavailable(request: Request, exc: Exception) -> Response:
        _log.warning("store unavailable on %s: %s", request.url.path, exc)
        return error_response(
            503,
            "Store unavailable",
            "The store's database does not answer; retry later.",
            headers={"Retry-After": str(STORE_RETRY_AFTER_S)},
        )

    async def upstream_error(request: Request, exc: Exception) -> Response:
        return error_response(502, "Device API error", str(exc))

    app.add_exception_handler(AuthError, auth)
    app.add_exception_handler(NotFound, not_found)
    app.add_exception_handler(BadRequest, bad_request)
    app.add_exception_handler(RateLimited, rate_limited)
    app.add_exception_handler(StoreError, store_error)
    app.add_exception_handler(StoreUnavailable, store_unavailable)
    app.add_exception_handler(UpstreamError, upstream_error)
