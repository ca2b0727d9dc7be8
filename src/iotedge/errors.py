"""The exceptions iotedge raises, one tree for the whole package.

    IotedgeError
    ├── ConfigError        bad setting, flag, keys or rules file (fails at startup)
    ├── UpstreamError      the device API failed; ``reason`` is timeout, status or payload
    ├── StoreError         the local store could not read or write
    │   └── StoreUnavailable   the store's server cannot be reached (HTTP 503, retry later)
    ├── AuthError          missing, unknown, revoked or expired API key (HTTP 401)
    ├── NotFound           no such object or client *for this caller* (HTTP 404)
    ├── BadRequest         a parameter or body is invalid (HTTP 422, naming the parameter)
    └── RateLimited        the key spent its request budget (HTTP 429)

Foreign exceptions are re-raised as one of these with ``raise ... from exc``; the edge's
HTTP layer maps them to JSON ``{"error", "detail"}`` bodies in one place.
"""

from typing import Any

__all__ = [
    "AuthError",
    "BadRequest",
    "ConfigError",
    "IotedgeError",
    "NotFound",
    "RateLimited",
    "StoreError",
    "StoreUnavailable",
    "UpstreamError",
]


class IotedgeError(Exception):
    """Base of every iotedge error."""


class ConfigError(IotedgeError):
    """A setting, flag or configuration file is invalid."""


class UpstreamError(IotedgeError):
    """The device API did not give a usable answer.

    Attributes:
        reason: ``timeout``, ``connect``, ``status`` or ``payload``.
        url: the URL that was requested.
        status_code: the HTTP status when ``reason`` is ``status``.
    """

    def __init__(self, reason: str, url: str, *, status_code: int | None = None, detail: str = "") -> None:
        self.reason = reason
        self.url = url
        self.status_code = status_code
        self.detail = detail
        status = f" {status_code}" if status_code is not None else ""
        super().__init__(f"device API {reason}{status} for {url}" + (f": {detail}" if detail else ""))


class StoreError(IotedgeError):
    """The local store failed to read or write."""


class StoreUnavailable(StoreError):
    """The store's server cannot be reached now (down, unreachable, out of connections).

    Transient by nature: the API answers 503 with ``Retry-After``, the collector keeps
    polling into its buffer, and both recover once the server answers again.
    """


class AuthError(IotedgeError):
    """The request carries no valid API key."""


class NotFound(IotedgeError):
    """The requested resource does not exist for this caller."""

    def __init__(self, what: str, detail: Any = None) -> None:
        self.what = what
        self.detail = detail
        super().__init__(what)


class BadRequest(IotedgeError):
    """A request parameter or body is invalid (answered 422, like framework validation errors).

    Attributes:
        parameter: the offending parameter's name.
        location: where it was sent: ``query``, ``path`` or ``body``.
    """

    def __init__(self, parameter: str, message: str, *, location: str = "query") -> None:
        self.parameter = parameter
        self.message = message
        self.location = location
        super().__init__(f"{parameter}: {message}")


class RateLimited(IotedgeError):
    """The caller exceeded its request budget; retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(f"rate limited, retry after {retry_after:.1f}s")
