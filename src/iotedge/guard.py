"""Connection guards of our uvicorn servers: head size, slow clients, a connection cap, TLS errors.

uvicorn with httptools accepts a request head of any size, keeps a connection that never
finishes its head or body open for ever, and takes any number of connections: one client
without a key could hold thousands of sockets and megabytes each. :func:`guarded_protocol`
builds the protocol class given to uvicorn as ``http=``, which adds to every connection:

* a head limit: a head over ``max_head`` bytes is answered 431 as JSON (414 when the URL
  alone is over ``max_url``) and the connection closed, before more of it is buffered;
* deadlines: the head must be complete ``head_timeout`` s after the connection or the
  request's first byte, the body ``body_timeout`` s after the head; else 408 and close;
* a connection cap: at ``max_connections`` the oldest connection that is not in the middle
  of a request (still sending its head, or idle) is closed to make room; when every one is
  busy the newcomer is closed at once;
* TLS done here, with ``loop.start_tls``, rather than by the event loop, which drops failed
  handshakes silently: a refused handshake, or plain HTTP sent to the TLS port, is logged
  once per peer per minute and passed to ``on_event`` as ``tls_<reason>``.

``on_event(name)`` also hears of every refusal (``head_too_large``, ``url_too_long``,
``head_timeout``, ``body_timeout``, ``evicted``, ``too_many_connections``) for the metrics.
"""

import asyncio
import json
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["CONNECTION_EVENTS", "TLS_REASONS", "Limits", "guarded_protocol", "tls_reason"]

_log = logging.getLogger(__name__)

TLS_REASONS = (
    "plain_http",
    "no_client_certificate",
    "bad_client_certificate",
    "certificate_refused",
    "protocol",
    "timeout",
    "closed",
    "other",
)
"""Why a TLS handshake failed, as counted (a bounded set)."""

CONNECTION_EVENTS = (
    "bad_request",
    "head_too_large",
    "url_too_long",
    "head_timeout",
    "body_timeout",
    "evicted",
    "too_many_connections",
)
"""Why the guard closed a connection, as counted (a bounded set)."""

_LINGER_S = 1.0  # how long a refused client may go on sending before the socket closes
_LOG_EVERY_S = 60.0  # one log line per peer and minute, whatever the rate of failures
_MAX_PEERS_REMEMBERED = 4096

# OpenSSL reason codes (ssl.SSLError.reason) by what they mean for an operator.
_SSL_REASONS = {
    "HTTP_REQUEST": "plain_http",
    "HTTPS_PROXY_REQUEST": "plain_http",
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "no_client_certificate",
    "CERTIFICATE_VERIFY_FAILED": "bad_client_certificate",
    "TLSV1_ALERT_UNKNOWN_CA": "certificate_refused",
    "SSLV3_ALERT_BAD_CERTIFICATE": "certificate_refused",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "certificate_refused",
    "TLSV1_ALERT_DECRYPT_ERROR": "certificate_refused",
    "WRONG_VERSION_NUMBER": "protocol",
    "UNSUPPORTED_PROTOCOL": "protocol",
    "UNKNOWN_PROTOCOL": "protocol",
    "VERSION_TOO_LOW": "protocol",
    "NO_SHARED_CIPHER": "protocol",
    "NO_PROTOCOLS_AVAILABLE": "protocol",
    "TLSV1_ALERT_PROTOCOL_VERSION": "protocol",
}


@dataclass(frozen=True, kw_only=True)
class Limits:
    """What one server accepts per connection, and how many connections."""

    max_head: int = 16 * 1024
    max_url: int = 4096
    head_timeout: float = 10.0
    body_timeout: float = 20.0
    max_connections: int = 512


def tls_reason(exc: BaseException) -> str:
    """The :data:`TLS_REASONS` entry of a failed server-side handshake."""
    if isinstance(exc, ssl.SSLError):
        if exc.reason in _SSL_REASONS:
            return _SSL_REASONS[exc.reason]
        if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
            return "closed"
        return "other"
    if isinstance(exc, TimeoutError) or "taking longer" in str(exc):
        return "timeout"
    if isinstance(exc, ConnectionError | EOFError):
        return "closed"
    return "other"


class _PeerLog:
    """Logs a peer's TLS failures at most once per minute (the count goes to the metrics)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last: dict[str, float] = {}

    def report(self, peer: str, reason: str, exc: BaseException) -> None:
        now = self._clock()
        last = self._last.get(peer)
        if last is not None and now - last < _LOG_EVERY_S:
            return
        if len(self._last) >= _MAX_PEERS_REMEMBERED:  # bounded: forget peers quiet for a minute
            self._last = {p: t for p, t in self._last.items() if now - t < _LOG_EVERY_S}
            if len(self._last) >= _MAX_PEERS_REMEMBERED:
                self._last.clear()
        self._last[peer] = now
        _log.warning("TLS handshake from %s refused (%s): %s; next report in a minute", peer, reason, exc)


def _raw_json(status: int, error: str, detail: str) -> bytes:
    """A complete HTTP/1.1 error answer that closes the connection, with the API's headers."""
    body = json.dumps({"error": error, "detail": detail}, separators=(",", ":")).encode()
    head = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
        "x-content-type-options: nosniff",
        "cache-control: no-store",
        "referrer-policy: no-referrer",
        "x-frame-options: DENY",
        "content-security-policy: default-src 'none'; frame-ancestors 'none'",
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class _Refused(Exception):
    """Raised in a parser callback to stop parsing a refused request."""


@dataclass(kw_only=True)
class _Server:
    """What the connections of one server share."""

    limits: Limits
    tls: ssl.SSLContext | None
    on_event: Callable[[str], None] | None
    peer_log: _PeerLog = field(default_factory=_PeerLog)
    # Connections not in the middle of a request, oldest first: the ones the cap may close.
    evictable: dict["_GuardedProtocol", None] = field(default_factory=dict)


class _OneWrite:
    """A transport that sends a response head together with the body that follows it.

    uvicorn writes the head and the body separately: two sends, each through the whole
    loopback TCP path, where one does. A write that looks like a complete head is held until
    the next write (or the loop's next turn, for answers without a body) and sent with it.
    """

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + bytes(data))
        elif isinstance(data, bytes) and data.startswith(b"HTTP/") and data.endswith(b"\r\n\r\n"):
            self._held = data
            self._loop.call_soon(self._flush)
        else:
            self._transport.write(data)

    def _flush(self) -> None:
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._flush()  # a held head was already answered as far as the app knows
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the guards above; one subclass per server."""

    guard: ClassVar["_Server"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._in_head = True
        self._head_bytes = 0
        self._refusal: tuple[int, str, str, str] | None = None
        self._handshake: asyncio.Task[None] | None = None
        self._draining = False
        self._raw_phase = False
        self._early: list[bytes] | None = None  # data decrypted before the handshake returned

    # -- connection life ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if not self._make_room():
            self._emit("too_many_connections")
            transport.abort()
            return
        self.guard.evictable[self] = None
        self._arm(self.guard.limits.head_timeout, "head_timeout")
        if self.guard.tls is None:
            super().connection_made(_OneWrite(transport, self.loop))  # type: ignore[arg-type]
            return
        # Tracked while handshaking, so the cap counts it and a shutdown closes it.
        self.transport = transport
        self.connections.add(self)
        # start_tls must see the ClientHello, not this protocol. asyncio's transports honour a
        # pause here; uvloop's start reading after connection_made whatever it asked (see
        # data_received), which is why servers with TLS run on asyncio's loop.
        transport.pause_reading()
        self._raw_phase = True
        # The request may be decrypted and handed over before start_tls returns: keep it.
        self._early = []
        self._handshake = self.loop.create_task(self._secure(transport), name="iotedge.tls-handshake")

    async def _secure(self, raw: asyncio.Transport) -> None:
        assert self.guard.tls is not None  # noqa: S101 - only started with a context
        peer = raw.get_extra_info("peername")
        self._raw_phase = False  # start_tls takes the transport over before it first awaits
        try:
            secure = await self.loop.start_tls(
                raw,
                self,
                self.guard.tls,
                server_side=True,
                ssl_handshake_timeout=self.guard.limits.head_timeout,
            )
        except (OSError, EOFError, RuntimeError) as exc:  # ssl.SSLError is an OSError
            self._forget()
            raw.abort()
            if isinstance(exc, OSError | EOFError):
                reason = tls_reason(exc)
                self._emit("tls_" + reason)
                self.guard.peer_log.report(str(peer[0]) if peer else "unknown", reason, exc)
            return
        if secure is None or secure.is_closing():
            self._forget()
            return
        super().connection_made(_OneWrite(secure, self.loop))  # type: ignore[arg-type]
        early, self._early = self._early, None
        if early:
            self.data_received(b"".join(early))

    def connection_lost(self, exc: Exception | None) -> None:
        self._forget()
        super().connection_lost(exc)

    def _forget(self) -> None:
        self._disarm()
        self.guard.evictable.pop(self, None)
        self.connections.discard(self)

    def _make_room(self) -> bool:
        """True when this connection may stay: under the cap, or after closing an idle one."""
        if len(self.connections) < self.guard.limits.max_connections:
            return True
        for victim in self.guard.evictable:
            victim._close("evicted")
            return True
        return False

    def _close(self, event: str, answer: bytes | None = None) -> None:
        self._emit(event)
        transport = self.transport
        self._forget()
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True  # the app's receive() now says http.disconnect
            self.cycle.message_event.set()
        if transport is None or transport.is_closing():
            return
        handshaking = self._early is not None  # the raw transport carries TLS: no plain answer
        # ``cycle`` is still the previous request's on a kept-alive connection: only a response
        # begun and not finished forbids an answer.
        cycle = self.cycle
        answering = cycle is not None and cycle.response_started and not cycle.response_complete
        if answer is not None and not handshaking and not answering:
            transport.write(answer)
            # Closing with unread input resets the connection, and a client still sending
            # (a huge head) would never read the answer: read and drop its input for a moment.
            self._draining = True
            self.loop.call_later(_LINGER_S, transport.close)
        else:
            transport.abort()

    def _emit(self, event: str) -> None:
        if self.guard.on_event is not None:
            self.guard.on_event(event)

    # -- deadlines ------------------------------------------------------------------------
    def _arm(self, seconds: float, event: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expire, event)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self, event: str) -> None:
        self._deadline = None
        status = HTTPStatus.REQUEST_TIMEOUT
        what = "request head" if event == "head_timeout" else "request body"
        self._close(event, _raw_json(status, "Request Timeout", f"the {what} took too long to arrive"))

    # -- parsing ----------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self._raw_phase:
            _log.error("TLS bytes reached the HTTP layer: serve TLS on asyncio's event loop, not uvloop")
            self.transport.abort()
            return
        if self._early is not None:
            self._early.append(data)
            return
        if self._draining:
            return
        self._unset_keepalive_if_required()
        head_before = self._in_head
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            if self._refusal is None:
                self._refusal = (400, "Bad Request", "malformed HTTP request", "bad_request")
        if self._refusal is None and head_before and self._in_head:
            # The whole chunk belongs to a head that is still incomplete.
            self._head_bytes += len(data)
            if self._head_bytes > self.guard.limits.max_head:
                self._refuse_head()
        if self._refusal is not None:
            status, error, detail, event = self._refusal
            self._close(event, _raw_json(status, error, detail))

    def _refuse_head(self) -> None:
        url = len(getattr(self, "url", b""))
        if url > self.guard.limits.max_url:
            self._refusal = (
                414,
                "URI Too Long",
                f"at most {self.guard.limits.max_url} bytes",
                "url_too_long",
            )
        else:
            detail = f"request headers and URL at most {self.guard.limits.max_head} bytes"
            self._refusal = (431, "Request Header Fields Too Large", detail, "head_too_large")

    def on_message_begin(self) -> None:
        self._in_head = True
        self._head_bytes = 0
        if self._deadline is None:
            self._arm(self.guard.limits.head_timeout, "head_timeout")
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.guard.limits.max_head:
            self._refuse_head()
            raise _Refused  # stops the parser; data_received answers
        self._in_head = False
        self.guard.evictable.pop(self, None)
        self._arm(self.guard.limits.body_timeout, "body_timeout")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        if self._deadline is None and self in self.connections:
            self.guard.evictable[self] = None  # idle until the next request (keep-alive)
        super().on_response_complete()

    def handle_websocket_upgrade(self) -> None:
        self._forget()
        super().handle_websocket_upgrade()


def guarded_protocol(
    limits: Limits,
    *,
    tls: ssl.SSLContext | None = None,
    on_event: Callable[[str], None] | None = None,
) -> type[HttpToolsProtocol]:
    """A protocol class for ``uvicorn.Config(http=...)`` enforcing ``limits`` (and serving ``tls``).

    Build one per server: the class holds that server's idle-connection list.
    """

    class GuardedHttpProtocol(_GuardedProtocol):
        guard = _Server(limits=limits, tls=tls, on_event=on_event)

    return GuardedHttpProtocol
