"""Test helpers for notifications: an outbox writer, a steered clock, real loopback receivers."""

import asyncio
import contextlib
import email
import email.policy
import hashlib
import hmac
import json
import sqlite3
import threading
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from iotedge.edge.notify import (
    DeliveryError,
    Notification,
    NotificationRow,
    notification_rows,
    pending_count,
    pg_notification_rows,
    pg_pending_count,
)
from iotedge.edge.store import migrate
from tests.procs import free_port

__all__ = [
    "FakeClock",
    "OutboxWriter",
    "PgOutboxWriter",
    "RecordingChannel",
    "WebhookReceiver",
    "webhook_receiver",
]

_T = TypeVar("_T")

T0 = 1_800_000_000.0  # 2027-01-15, a fixed wall-clock start for every test


class FakeClock:
    """Epoch seconds that move only when the test says so."""

    def __init__(self, start: float = T0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += seconds


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat()


def _payload(
    event_id: int,
    transition: str,
    at: float,
    *,
    object_id: str = "device_1",
    client: str = "client_1",
    metric: str = "temperature",
    rule: str = "temperature_high",
    severity: str = "warning",
    value: float = 31.5,
    threshold: float = 30.0,
    started_at: float | None = None,
) -> dict[str, Any]:
    """The event an outbox row carries, as the rules engine writes it."""
    return {
        "event_id": event_id,
        "object_id": object_id,
        "client": client,
        "type": "temperature_sensor",
        "metric": metric,
        "rule": rule,
        "severity": severity,
        "value": value,
        "threshold": threshold,
        "started_at": _iso(started_at if started_at is not None else at),
        "ended_at": _iso(at) if transition == "resolved" else None,
        "message": f"{metric} above {threshold}",
    }


class OutboxWriter:
    """Writes outbox rows as the rules engine does (WAL, one short transaction each)."""

    def __init__(self, path: Path, edge_id: str = "edge-test") -> None:
        self.path = path
        self.edge_id = edge_id
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        migrate(self.conn)  # every table of the store, the outbox included

    def add(
        self,
        event_id: int,
        transition: str,
        *,
        at: float,
        object_id: str = "device_1",
        client: str = "client_1",
        metric: str = "temperature",
        rule: str = "temperature_high",
        severity: str = "warning",
        value: float = 31.5,
        threshold: float = 30.0,
        started_at: float | None = None,
    ) -> int:
        """Insert one transition; returns its outbox id."""
        payload = _payload(
            event_id,
            transition,
            at,
            object_id=object_id,
            client=client,
            metric=metric,
            rule=rule,
            severity=severity,
            value=value,
            threshold=threshold,
            started_at=started_at,
        )
        key = f"{self.edge_id}:{event_id}:{transition}"
        cur = self.conn.execute(
            "INSERT INTO outbox (event_id, transition, client, severity, payload,"
            " idempotency_key, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (event_id, transition, client, severity, json.dumps(payload), key, at),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def statuses(self) -> list[tuple[int, str, str, str, str]]:
        """(outbox_id, channel, kind, status, reason) of every delivery row."""
        return [
            tuple(r)
            for r in self.conn.execute(
                "SELECT outbox_id, channel, kind, status, reason FROM outbox_delivery"
                " ORDER BY outbox_id, channel, kind"
            )
        ]

    def close(self) -> None:
        """Close the writer's connection."""
        self.conn.close()


@dataclass
class RecordingChannel:
    """A channel at the delivery seam that records what it is given and can fail on demand."""

    name: str
    fail_first: int = 0
    permanent: bool = False
    notes: list[Notification] = field(default_factory=list)
    calls: int = 0

    async def send(self, note: Notification) -> None:
        """Record ``note``, or fail while ``fail_first`` lasts."""
        self.calls += 1
        if self.calls <= self.fail_first:
            raise DeliveryError(self.name, f"refused call {self.calls}", permanent=self.permanent)
        self.notes.append(note)

    def kinds(self) -> list[str]:
        """The kinds of the delivered notes, in order."""
        return [n.kind for n in self.notes]


_REQUIRED_EVENT_KEYS = {
    "event_id",
    "object_id",
    "client",
    "type",
    "metric",
    "rule",
    "severity",
    "value",
    "threshold",
    "started_at",
    "ended_at",
    "message",
}
_TYPES = {"anomaly.opened", "anomaly.resolved", "anomaly.flapping", "anomaly.stable", "test"}


def schema_problems(body: dict[str, Any], key_header: str | None) -> list[str]:
    """What is wrong with a webhook body against the documented v1 schema (empty if fine)."""
    problems = []
    expected = {
        "version",
        "type",
        "idempotency_key",
        "edge_id",
        "recorded_at",
        "grouped",
        "flapping",
        "event",
    }
    if set(body) != expected:
        problems.append(f"keys {sorted(body)}")
    if body.get("version") != 1:
        problems.append("version")
    if body.get("type") not in _TYPES:
        problems.append(f"type {body.get('type')}")
    if body.get("idempotency_key") != key_header:
        problems.append("idempotency key differs from header")
    if body.get("type") != "test" and not set(body.get("event", {})) >= _REQUIRED_EVENT_KEYS:
        problems.append("event fields")
    if body.get("type") in ("anomaly.flapping", "anomaly.stable"):
        flapping = body.get("flapping") or {}
        if set(flapping) != {"transitions", "window_s", "state"}:
            problems.append("flapping fields")
    return problems


class WebhookReceiver:
    """A real HTTP receiver on loopback that checks signatures and schema, and dedupes.

    ``fail_first`` answers 500 that many times; ``hang`` makes requests wait until
    :meth:`release` (bounded); ``accepted`` keeps the first body per idempotency key.
    """

    def __init__(self, secret: str, port: int = 0, fail_first: int = 0) -> None:
        self.secret = secret
        self.fail_first = fail_first
        self.hang = False
        self.requests = 0
        self.handled = 0
        self.received: list[str] = []
        self.accepted: dict[str, dict[str, Any]] = {}
        self.duplicates = 0
        self.problems: list[str] = []
        self.got_request = threading.Event()
        self._released = threading.Event()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        body = req.rfile.read(int(req.headers.get("Content-Length", "0")))
        with self._lock:
            self.requests += 1
            number = self.requests
        self.got_request.set()
        if self.hang:
            self._released.wait(30)
        expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        key = req.headers.get("X-Iotedge-Idempotency-Key")
        with self._lock:
            if not hmac.compare_digest(expected, req.headers.get("X-Iotedge-Signature", "")):
                self.problems.append("bad signature")
                status = 401
            elif number <= self.fail_first:
                status = 500
            else:
                data = json.loads(body)
                self.problems += schema_problems(data, key)
                if not req.headers.get("X-Iotedge-Timestamp", "").isdigit():
                    self.problems.append("timestamp header")
                assert key is not None
                self.received.append(key)
                if key in self.accepted:
                    self.duplicates += 1
                else:
                    self.accepted[key] = data
                status = 200
        try:
            req.send_response(status)
            req.send_header("Content-Length", "0")
            req.end_headers()
        finally:
            with self._lock:
                self.handled += 1

    def wait_idle(self, timeout: float) -> bool:
        """Wait (bounded) until every request received so far has been answered."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self.handled == self.requests:
                    return True
            time.sleep(0.01)
        return False

    def types(self) -> list[str]:
        """The ``type`` of each accepted message, in arrival order."""
        return [body["type"] for body in self.accepted.values()]

    def release(self) -> None:
        """Let hanging requests finish."""
        self._released.set()

    def start(self) -> "WebhookReceiver":
        """Serve in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.release()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(10)


@contextlib.contextmanager
def webhook_receiver(secret: str, port: int = 0, fail_first: int = 0) -> Iterator[WebhookReceiver]:
    """A started :class:`WebhookReceiver`, stopped when the block ends."""
    receiver = WebhookReceiver(secret, port, fail_first).start()
    try:
        yield receiver
    finally:
        receiver.stop()


@dataclass
class Mail:
    """One message the SMTP server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    msg: EmailMessage
    authenticated: bool
    tls: bool


@dataclass
class SmtpSink:
    """What the test SMTP server received."""

    port: int
    mails: list[Mail] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def subjects(self) -> list[str]:
        """Subjects in arrival order."""
        with self.lock:
            return [str(m.msg["Subject"]) for m in self.mails]


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        mail = Mail(
            mail_from=str(envelope.mail_from),
            rcpt_tos=list(envelope.rcpt_tos),
            msg=msg,
            authenticated=bool(session.authenticated),
            # session.ssl covers STARTTLS; an implicit-TLS transport carries its SSL object.
            tls=session.ssl is not None or _transport_ssl(server),
        )
        with self.sink.lock:
            self.sink.mails.append(mail)
        return "250 Message accepted"


def _transport_ssl(server: SMTP) -> bool:
    transport = server.transport
    return transport is not None and transport.get_extra_info("ssl_object") is not None


@contextlib.contextmanager
def smtp_sink(**kwargs: Any) -> Iterator[SmtpSink]:
    """A real aiosmtpd server on a free loopback port; kwargs go to the controller."""
    sink = SmtpSink(port=free_port())
    controller = Controller(_Handler(sink), hostname="127.0.0.1", port=sink.port, **kwargs)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


def notification_rows_of(
    out: "OutboxWriter | PgOutboxWriter", clients: set[str] | None, limit: int = 100
) -> Any:
    """``/notifications`` rows of either writer's store."""
    if isinstance(out, PgOutboxWriter):
        return out.rows(clients, limit)
    return notification_rows(out.conn, clients, limit)


def pending_count_of(out: "OutboxWriter | PgOutboxWriter") -> int:
    """Undelivered messages of either writer's store."""
    if isinstance(out, PgOutboxWriter):
        return out.pending()
    return pending_count(out.conn)


class PgOutboxWriter:
    """:class:`OutboxWriter` on a migrated PostgreSQL database: the same rows, the same listings.

    The tables are emptied (ids restart at 1) so outbox ids match the SQLite runs. Each
    call uses a connection of its own, so nothing stays open after the test.
    """

    def __init__(self, url: str, edge_id: str = "edge-test") -> None:
        self.url = url
        self.edge_id = edge_id
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("TRUNCATE outbox, outbox_delivery, notify_series, collectors RESTART IDENTITY")

    def add(self, event_id: int, transition: str, *, at: float, **fields: Any) -> int:
        """Insert one transition as the PostgreSQL store does; returns its outbox id."""
        payload = _payload(event_id, transition, at, **fields)
        with psycopg.connect(self.url, autocommit=True) as conn:
            row = conn.execute(
                "INSERT INTO outbox (event_id, transition, client, severity, payload,"
                " idempotency_key, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (
                    event_id,
                    transition,
                    payload["client"],
                    payload["severity"],
                    json.dumps(payload),
                    f"{self.edge_id}:{event_id}:{transition}",
                    at,
                ),
            ).fetchone()
        assert row is not None
        return int(row[0])

    def statuses(self) -> list[tuple[int, str, str, str, str]]:
        """(outbox_id, channel, kind, status, reason) of every delivery row."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            return [
                (int(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]))
                for r in conn.execute(
                    "SELECT outbox_id, channel, kind, status, reason FROM outbox_delivery"
                    " ORDER BY outbox_id, channel, kind"
                )
            ]

    def _async(self, coro: Coroutine[Any, Any, _T]) -> _T:
        # Tests call this inside and outside an event loop: give it a loop of its own.
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, coro).result()

    def rows(self, clients: set[str] | None, limit: int = 100) -> list[NotificationRow]:
        """:func:`pg_notification_rows` on a connection of its own."""

        async def read() -> list[NotificationRow]:
            async with await psycopg.AsyncConnection.connect(self.url) as conn:
                return await pg_notification_rows(conn, clients, limit)

        return self._async(read())

    def pending(self) -> int:
        """:func:`pg_pending_count` on a connection of its own."""

        async def read() -> int:
            async with await psycopg.AsyncConnection.connect(self.url) as conn:
                return await pg_pending_count(conn)

        return self._async(read())

    def close(self) -> None:
        """Nothing stays open."""
