"""Read-only views of delivery state for the API and the metrics exporter.

SQLite: :func:`notification_rows` and :func:`pending_count` on the store's connections.
PostgreSQL: :func:`pg_notification_rows` and :func:`pg_pending_count`, async, on a psycopg
async connection or pool (the store's), with the same rows and counts.
"""

import json
import sqlite3
from collections.abc import AsyncIterator, Sequence, Set
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from iotedge.edge.notify.message import iso
from iotedge.edge.store import SqliteDatabase

__all__ = [
    "NotificationRow",
    "PgSource",
    "notification_rows",
    "pending_count",
    "pg_notification_rows",
    "pg_pending_count",
]

PgSource = AsyncConnection[Any] | AsyncConnectionPool[Any]
"""A PostgreSQL connection, or a pool to borrow one from (the store's)."""

Db = SqliteDatabase | sqlite3.Connection
"""The store's connections (the edge) or a plain connection to the file (tools, tests)."""


def _query(db: Db, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    if isinstance(db, SqliteDatabase):
        return db.query(sql, params)
    return db.execute(sql, params).fetchall()


@dataclass(frozen=True, kw_only=True)
class NotificationRow:
    """One message on one channel: what it is about and how its delivery stands."""

    outbox_id: int
    event_id: int
    client: str
    object_id: str | None
    metric: str | None
    rule: str | None
    severity: str
    transition: str
    kind: str
    channel: str
    status: str
    reason: str
    attempts: int
    last_error: str | None
    idempotency_key: str
    recorded_at: str | None
    next_attempt_at: str | None
    updated_at: str | None


def notification_rows(db: Db, clients: Set[str] | None, limit: int = 100) -> list[NotificationRow]:
    """The newest deliveries first, only for ``clients`` (``None`` means every client)."""
    if clients is not None and not clients:
        return []
    everyone = clients is None
    scope = json.dumps(sorted(clients or ()))
    rows = _query(
        db,
        "SELECT d.outbox_id, d.channel, d.kind, d.status, d.reason, d.attempts, d.last_error,"
        " d.next_attempt_at, d.updated_at, o.event_id, o.client, o.severity, o.transition,"
        " o.idempotency_key, o.created_at,"
        # A payload that is not strict JSON (say a NaN) must not break the whole listing.
        " iif(json_valid(o.payload), json_extract(o.payload, '$.object_id'), NULL),"
        " iif(json_valid(o.payload), json_extract(o.payload, '$.metric'), NULL),"
        " iif(json_valid(o.payload), json_extract(o.payload, '$.rule'), NULL)"
        " FROM outbox_delivery d JOIN outbox o ON o.id = d.outbox_id"
        " WHERE ? OR o.client IN (SELECT value FROM json_each(?))"
        " ORDER BY d.outbox_id DESC, d.channel, d.kind LIMIT ?",
        (everyone, scope, max(0, limit)),
    )
    return [_row(r) for r in rows]


def _row(r: Sequence[Any]) -> NotificationRow:
    return NotificationRow(
        outbox_id=r[0],
        channel=r[1],
        kind=r[2],
        status=r[3],
        reason=r[4],
        attempts=r[5],
        last_error=r[6],
        next_attempt_at=iso(r[7]) if r[3] == "pending" else None,
        updated_at=iso(r[8]),
        event_id=r[9],
        client=r[10],
        severity=r[11],
        transition=r[12],
        idempotency_key=r[13] if r[2] == "event" else f"{r[13]}:{r[2]}",
        recorded_at=iso(r[14]),
        object_id=r[15],
        metric=r[16],
        rule=r[17],
    )


def pending_count(db: Db) -> int:
    """Messages not yet delivered: pending deliveries plus outbox rows not yet triaged."""
    pending = _query(db, "SELECT COUNT(*) FROM outbox_delivery WHERE status = 'pending'")[0][0]
    untriaged = _query(
        db,
        "SELECT COUNT(*) FROM outbox WHERE id > COALESCE("
        "(SELECT last_outbox_id FROM notify_cursor WHERE id = 1), 0)",
    )[0][0]
    return int(pending) + int(untriaged)


@asynccontextmanager
async def _pg(source: PgSource) -> AsyncIterator[AsyncConnection[Any]]:
    if isinstance(source, AsyncConnectionPool):
        async with source.connection() as conn:
            yield conn
    else:
        yield source


def _field(payload: str, name: str) -> Any:
    try:
        value = json.loads(payload)
    except ValueError:
        return None
    return value.get(name) if isinstance(value, dict) else None


async def pg_notification_rows(
    source: PgSource, clients: Set[str] | None, limit: int = 100
) -> list[NotificationRow]:
    """:func:`notification_rows` on PostgreSQL."""
    if clients is not None and not clients:
        return []
    async with _pg(source) as conn:
        cur = await conn.execute(
            "SELECT d.outbox_id, d.channel, d.kind, d.status, d.reason, d.attempts, d.last_error,"
            " d.next_attempt_at, d.updated_at, o.event_id, o.client, o.severity, o.transition,"
            " o.idempotency_key, o.created_at, o.payload"
            " FROM outbox_delivery d JOIN outbox o ON o.id = d.outbox_id"
            " WHERE %s OR o.client = ANY(%s)"
            " ORDER BY d.outbox_id DESC, d.channel, d.kind LIMIT %s",
            (clients is None, sorted(clients or ()), max(0, limit)),
        )
        rows = await cur.fetchall()
    # The payload's fields are read here, so a payload that is not strict JSON reads as None.
    return [_row((*r[:15], *(_field(r[15], k) for k in ("object_id", "metric", "rule")))) for r in rows]


async def pg_pending_count(source: PgSource) -> int:
    """:func:`pending_count` on PostgreSQL: pending deliveries plus outbox rows not triaged."""
    async with _pg(source) as conn:
        cur = await conn.execute(
            "SELECT (SELECT COUNT(*) FROM outbox_delivery WHERE status = 'pending'),"
            " (SELECT COUNT(*) FROM outbox WHERE NOT triaged)"
        )
        row = await cur.fetchone()
    return 0 if row is None else int(row[0]) + int(row[1])
