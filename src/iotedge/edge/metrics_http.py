"""The HTTP side of the metrics: a request-counting middleware and the metrics server.

The metrics server is a second uvicorn server in the edge's process and event loop, on
its own address and port (127.0.0.1:8001 by default), so the API's keys and rate limits do
not apply to Prometheus. It has its own protection instead, the kind Prometheus's scrape
config speaks: a token sent as a bearer token (``authorization``) or as the basic-auth
password (``basic_auth``), and TLS (``tls_config``); the same connection guards as the API
(:mod:`iotedge.guard`) bound what an unauthenticated peer can hold.

A scrape collects on the event loop (custom collectors read in-memory state, which is then
consistent without locks) and renders the text format in a worker thread, because
rendering 20,000 series takes about 80 ms that the API should not wait for.
"""

import asyncio
import base64
import binascii
import contextlib
import gzip
import hmac
import io
import ipaddress
import json
import logging
import re
import socket
import ssl
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import uvicorn
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from iotedge.config import EdgeSettings
from iotedge.edge.metrics import EdgeMetrics, LabelledRows
from iotedge.errors import ConfigError
from iotedge.guard import Limits, guarded_protocol
from iotedge.tls import server_context

__all__ = [
    "METRICS_LIMITS",
    "MetricsAccess",
    "MetricsMiddleware",
    "MetricsServer",
    "metrics_server_for",
    "serve_metrics",
]

_log = logging.getLogger(__name__)

UNMATCHED = "unmatched"  # route label of requests no route matched (404s): raw paths are unbounded
CLIENT_CLOSED = 499  # status label when the client went away before an answer (nginx's code)
_GZIP_LEVEL = 1  # level 1 already shrinks the text 30-fold at a fraction of level 9's cost
_SERIES_SUFFIXES_DROPPED = ("_created",)  # creation times double the series for no dashboard use
# Names the text format takes as they are (any other goes through the library's escaping).
_PLAIN_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_PLAIN_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class MetricsMiddleware:
    """Pure ASGI middleware counting requests by route template, method and status.

    Add it with ``app.add_middleware(MetricsMiddleware, metrics=metrics)``. The route is
    read from ``scope["route"]`` after the router has run, so ``/objects/{object_id}`` is
    one series whatever the id; requests no route matched are labelled ``unmatched``.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: EdgeMetrics,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self._clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = self._clock()
        status: int | None = None

        async def send_and_watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        except asyncio.CancelledError:
            status = status or CLIENT_CLOSED
            raise
        except Exception:
            status = status or 500  # the outer error handler will answer 500
            raise
        finally:
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            self.metrics.observe_http(route, scope.get("method", ""), status or 500, self._clock() - started)


class _Snapshot:
    """Already collected metric families, handed to the text renderer in a thread."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def _render(families: list[Metric], compress: bool) -> bytes:
    """The text of ``families``: the large row families written here, the rest by the library."""
    parts: list[bytes] = []
    for family in families:
        text = _rows_text(family) if isinstance(family, LabelledRows) else None
        if text is not None:
            parts.append(text.encode())
            continue
        family.samples = [s for s in family.samples if not s.name.endswith(_SERIES_SUFFIXES_DROPPED)]
        parts.append(generate_latest(_Snapshot([family])))
    body = b"".join(parts)
    return gzip.compress(body, compresslevel=_GZIP_LEVEL) if compress else body


def _number(value: float) -> str:
    text: str = floatToGoString(value)  # type: ignore[no-untyped-call]  # unannotated in the library
    return text


def _escape_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _header(name: str, family: Metric) -> str:
    documentation = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {name} {documentation}\n# TYPE {name} {family.type}\n"


def _rows_text(family: LabelledRows) -> str | None:
    """``generate_latest``'s text of a counter or gauge kept as rows, to the byte; None for others.

    The library formats every sample through a ``Sample`` and generic escaping, about 6 µs a
    series: 0.2 s of CPU holding the GIL per scrape for the ~30,000 anomaly and per-object
    series of a 10,000-object fleet. These families' names and labels need no escaping but
    the values', so their lines are written here, one by one into one buffer (a list of
    15,000 lines was as many small objects alive at once). ``tests/unit/test_metrics.py``
    compares the served text with the library's.
    """
    name = family.sample_name
    if family.type not in ("counter", "gauge") or not _PLAIN_METRIC_NAME.fullmatch(name):
        return None
    if not all(_PLAIN_LABEL_NAME.fullmatch(label) for label in family.labelnames):
        return None
    order = sorted(range(len(family.labelnames)), key=lambda index: family.labelnames[index])
    keys = [f'{family.labelnames[index]}="' for index in order]
    out = io.StringIO()
    out.write(_header(name, family))
    for values, value in family.rows.items():
        labels = '",'.join(
            [key + _escape_value(values[index]) for key, index in zip(keys, order, strict=True)]
        )
        out.write(f'{name}{{{labels}"}} {_number(value)}\n' if labels else f"{name} {_number(value)}\n")
    return out.getvalue()


METRICS_LIMITS = Limits(
    max_head=8 * 1024, max_url=1024, head_timeout=10.0, body_timeout=10.0, max_connections=64
)
"""Scrapers send small GETs; a few connections are plenty."""

_UNAUTHORIZED = json.dumps({"error": "Unauthorized"}).encode()


@dataclass(frozen=True, kw_only=True)
class MetricsAccess:
    """Who may scrape: anyone when ``token`` is empty, else whoever sends it.

    Accepted as ``Authorization: Bearer <token>`` (Prometheus's ``authorization``) or as
    the password of basic auth with user ``user`` (Prometheus's ``basic_auth``).
    """

    token: str = ""
    user: str = "prometheus"

    def allows(self, authorization: bytes | None) -> bool:
        """Whether this Authorization header value opens the metrics (constant-time compare)."""
        if not self.token:
            return True
        if not authorization:
            return False
        scheme, _, credentials = authorization.decode("latin-1").strip().partition(" ")
        credentials = credentials.strip()
        if scheme.lower() == "bearer":
            return hmac.compare_digest(credentials.encode(), self.token.encode())
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(credentials, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False
            user_ok = hmac.compare_digest(user.encode(), self.user.encode())
            return hmac.compare_digest(password.encode(), self.token.encode()) and user_ok
        return False


class _MetricsApp:
    """ASGI app answering ``GET /metrics`` (and ``/``) in the Prometheus text format."""

    def __init__(self, registry: CollectorRegistry, access: MetricsAccess) -> None:
        self._registry = registry
        self._access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if not self._access.allows(dict(scope["headers"]).get(b"authorization")):
            challenge = b'Bearer realm="iotedge metrics", Basic realm="iotedge metrics"'
            headers = [(b"content-type", b"application/json"), (b"www-authenticate", challenge)]
            await _answer(send, 401, _UNAUTHORIZED, headers)
            return
        if scope["path"] not in ("/", "/metrics"):
            await _answer(send, 404, b"not found; metrics are at /metrics\n")
            return
        if scope["method"] not in ("GET", "HEAD"):
            await _answer(send, 405, b"method not allowed\n", [(b"allow", b"GET, HEAD")])
            return
        try:
            families = list(self._registry.collect())
        except Exception:  # noqa: BLE001 - a broken source must not kill the scrape server
            _log.exception("collecting metrics failed")
            await _answer(send, 500, b"collecting metrics failed\n")
            return
        accept = dict(scope["headers"]).get(b"accept-encoding", b"")
        compress = b"gzip" in accept
        body = await asyncio.to_thread(_render, families, compress)
        headers = [(b"content-type", CONTENT_TYPE_PLAIN_0_0_4.encode())]
        if compress:
            headers.append((b"content-encoding", b"gzip"))
        await _answer(send, 200, b"" if scope["method"] == "HEAD" else body, headers, len(body))


async def _answer(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
    length: int | None = None,
) -> None:
    headers = list(headers or [(b"content-type", b"text/plain; charset=utf-8")])
    headers.append((b"content-length", str(len(body) if length is None else length).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _NoSignalServer(uvicorn.Server):
    """A uvicorn server that leaves SIGINT/SIGTERM to the edge's main server."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class MetricsServer:
    """Serves ``registry`` on ``host:port`` until stopped; ``port=0`` picks a free port.

    Use as ``async with MetricsServer(registry, host=..., port=...) as server:`` in the
    lifespan, or ``start()``/``stop()``. The socket is bound in :meth:`start`, so a port in
    use raises ``OSError`` there, before the edge reports ready.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        host: str = "127.0.0.1",
        port: int = 8001,
        tls: ssl.SSLContext | None = None,
        access: MetricsAccess | None = None,
        on_event: Callable[[str], None] | None = None,
    ):
        self._registry = registry
        self.host = host
        self._requested_port = port
        self._tls = tls
        self._access = access or MetricsAccess()
        self._on_event = on_event
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The port listened on (the chosen one when asked for 0)."""
        if self._socket is None:
            return self._requested_port
        return int(self._socket.getsockname()[1])

    @property
    def url(self) -> str:
        """Where Prometheus should scrape."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self._tls else 'http'}://{host}:{self.port}/metrics"

    async def start(self) -> None:
        """Bind and start serving; returns once the server accepts connections."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._socket = socket.create_server((self.host, self._requested_port), family=family)
        config = uvicorn.Config(
            _MetricsApp(self._registry, self._access),
            http=guarded_protocol(METRICS_LIMITS, tls=self._tls, on_event=self._on_event),
            interface="asgi3",
            lifespan="off",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=2,
            server_header=False,
        )
        self._server = _NoSignalServer(config)
        self._task = asyncio.create_task(
            self._server.serve(sockets=[self._socket]), name="iotedge.edge.metrics-server"
        )
        try:
            for _ in range(500):  # bounded: at most about 5 s
                if self._server.started or self._task.done():
                    break
                await asyncio.sleep(0.01)
            if not self._server.started:
                raise OSError(f"metrics server did not start on {self.host}:{self.port}")
        except BaseException:  # cancelled while starting too: never leave the port bound
            await asyncio.shield(self.stop())
            raise
        _log.info("metrics at %s", self.url)

    async def stop(self) -> None:
        """Stop serving and release the port (idempotent)."""
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
            self._task = None
        if self._socket is not None:
            self._socket.close()
        self._server = None

    async def __aenter__(self) -> "MetricsServer":
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()


async def serve_metrics(registry: CollectorRegistry, *, host: str, port: int, **options: Any) -> None:
    """Serve ``registry`` until cancelled (a task for the edge's supervisor TaskGroup)."""
    server = MetricsServer(registry, host=host, port=port, **options)
    try:
        await server.start()
        await asyncio.Event().wait()
    finally:
        await asyncio.shield(server.stop())


def metrics_server_for(
    settings: EdgeSettings, registry: CollectorRegistry, on_event: Callable[[str], None] | None = None
) -> MetricsServer:
    """The metrics server ``settings`` describe: address, TLS (its own or the API's) and token.

    Raises:
        ConfigError: the token file or a TLS file cannot be used.
    """
    token = settings.metrics_token
    if settings.metrics_token_file is not None:
        try:
            token = settings.metrics_token_file.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"cannot read the metrics token file {settings.metrics_token_file}: {exc}"
            ) from exc
        if not token:
            raise ConfigError(f"the metrics token file {settings.metrics_token_file} is empty")
    if settings.metrics_certfile is not None:
        tls = server_context(settings.metrics_certfile, settings.metrics_keyfile, None)
    else:
        tls = server_context(settings.certfile, settings.keyfile, None)
    if not token and not _is_loopback(settings.metrics_host) and settings.metrics_port:
        _log.warning(
            "metrics on %s:%d need no token: anyone who can reach them can read them; "
            "set IOTEDGE_METRICS_TOKEN or --metrics-token-file",
            settings.metrics_host,
            settings.metrics_port,
        )
    return MetricsServer(
        registry,
        host=settings.metrics_host,
        port=settings.metrics_port,
        tls=tls,
        access=MetricsAccess(token=token, user=settings.metrics_user),
        on_event=on_event,
    )


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
