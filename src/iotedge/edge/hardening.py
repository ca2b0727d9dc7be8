"""HTTP hygiene as one pure ASGI middleware: security headers, URL and body size limits.

Every response gets ``X-Content-Type-Options: nosniff``, ``Cache-Control: no-store`` (API
answers carry per-client data: no proxy or browser may keep them), ``Referrer-Policy``,
``X-Frame-Options`` and a Content-Security-Policy that allows nothing; the interactive
docs pages (served from the package, :mod:`iotedge.apidocs`) get a policy that lets their
own script and style load, from this origin only. Over TLS,
``Strict-Transport-Security`` is added. A URL longer than ``max_url`` bytes is answered
414 and a body larger than ``max_body`` bytes 413, both as JSON, before any handler runs
(a body without ``Content-Length`` is counted as it streams in).
"""

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from iotedge.apidocs import DOCS_CSP, DOCS_PATHS
from iotedge.web import error_response

__all__ = ["API_CSP", "DOCS_CSP", "UI_CSP", "SecurityMiddleware", "security_headers", "with_security_headers"]

API_CSP = "default-src 'none'; frame-ancestors 'none'"
"""The policy of API answers: JSON loads nothing."""

_DOCS_PATHS = frozenset(DOCS_PATHS)

UI_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""The policy of the web console under /ui/: its own files only, nothing inline."""


def _csp(path: str) -> str:
    if path in _DOCS_PATHS:
        return DOCS_CSP
    return UI_CSP if path == "/ui" or path.startswith("/ui/") else API_CSP


_COMMON = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]
_HSTS = (b"strict-transport-security", b"max-age=31536000")


class _BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body outgrows the limit (FastAPI re-raises it)."""

    def __init__(self) -> None:
        super().__init__(413, "Request body too large")


class SecurityMiddleware:
    """Security headers and size limits for every HTTP request.

    Args:
        app: the wrapped ASGI app.
        max_body: largest accepted request body in bytes.
        max_url: longest accepted path plus query string in bytes.
    """

    def __init__(self, app: ASGIApp, *, max_body: int = 64 * 1024, max_url: int = 4096) -> None:
        self.app = app
        self.max_body = max_body
        self.max_url = max_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one connection event."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        ours = security_headers(scope)  # of the path as it came in (a mount may change the scope)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": with_security_headers(message.get("headers", []), ours)}
            await send(message)

        url_bytes = len(scope.get("raw_path") or path.encode()) + len(scope.get("query_string", b""))
        if url_bytes > self.max_url:
            response = error_response(414, "URI Too Long", f"at most {self.max_url} bytes")
            await response(scope, receive, send_with_headers)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body:
            response = error_response(413, "Request body too large", f"at most {self.max_body} bytes")
            await response(scope, receive, send_with_headers)
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise _BodyTooLarge
            return message

        await self.app(scope, limited_receive, send_with_headers)


def security_headers(scope: Scope) -> list[tuple[bytes, bytes]]:
    """The hygiene headers of a request's answer."""
    ours = [*_COMMON, (b"content-security-policy", _csp(scope.get("path", "")).encode())]
    if scope.get("scheme") == "https":
        ours.append(_HSTS)
    return ours


def with_security_headers(
    headers: list[tuple[bytes, bytes]], ours: list[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    """A response's ``headers`` followed by those of ``ours`` it does not set itself."""
    present = {name.lower() for name, _ in headers}
    return [*headers, *((name, value) for name, value in ours if name not in present)]


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
