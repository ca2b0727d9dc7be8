"""Anomaly events and their outbox rows, written together in one transaction."""

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import astuple, replace
from typing import Any

from iotedge.edge.store.connection import SqliteDatabase
from iotedge.edge.store.readings import in_scope
from iotedge.edge.store.records import AnomalyEvent, EventEnd, Scope
from iotedge.edge.timefmt import epoch_ms, iso_utc

__all__ = ["ANOMALY_FIELDS", "EventsMixin", "anomaly_json", "event_conditions"]

ANOMALY_FIELDS = (
    "object_id", "client", "type", "metric", "rule", "severity",
    "value", "threshold", "last_value", "message",
)  # fmt: skip
"""Fields of :class:`AnomalyEvent` the public JSON shows as they are, in its order."""

_COLUMNS = (
    "id, object_id, client, type, metric, rule, severity, value, threshold, message, "
    "started_at, ended_at, last_value"
)


def event_conditions(
    state: str, since: float | None, until: float | None, *, mark: str
) -> tuple[list[str], list[Any]]:
    """WHERE conditions (and their values) of events in ``state`` overlapping [since, until).

    ``mark`` is the driver's placeholder (``?`` for SQLite, ``%s`` for psycopg): both
    backends select events the same way.
    """
    where: list[str] = []
    args: list[Any] = []
    if state == "open":
        where.append("ended_at IS NULL")
    elif state == "resolved":
        where.append("ended_at IS NOT NULL")
    if since is not None:
        where.append(f"(ended_at IS NULL OR ended_at >= {mark})")
        args.append(since)
    if until is not None:
        where.append(f"started_at < {mark}")
        args.append(until)
    return where, args


def _event(row: Sequence[Any]) -> AnomalyEvent:
    names = _COLUMNS.split(", ")
    return AnomalyEvent(**dict(zip(names, row, strict=True)))


class EventsMixin:
    """The anomaly and outbox half of the SQLite store."""

    _db: SqliteDatabase

    def record_transitions(
        self,
        opened: Sequence[AnomalyEvent],
        closed: Sequence[EventEnd],
        *,
        edge_id: str,
        now: float,
    ) -> list[int]:
        """Open and close anomaly events, writing their outbox rows in the same transaction.

        An opened event that already has ``ended_at`` (it opened and cleared in one batch)
        gets both outbox rows. Returns the opened events' ids.
        """
        with self._db.write() as db:
            for event in opened:
                stored = event if event.last_value is not None else _with_last(event)
                db.execute(
                    f"INSERT INTO anomalies ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",  # noqa: S608
                    astuple(stored),
                )
                _outbox(db, event.id, "opened", edge_id, now)
                if event.ended_at is not None:
                    _outbox(db, event.id, "resolved", edge_id, now)
            for end in closed:
                db.execute(
                    "UPDATE anomalies SET ended_at=?, last_value=COALESCE(?, last_value) "
                    "WHERE id=? AND ended_at IS NULL",
                    (end.ended_at, end.last_value, end.event_id),
                )
                _outbox(db, end.event_id, "resolved", edge_id, now)
        return [event.id for event in opened]

    def open_anomalies(self) -> list[AnomalyEvent]:
        """Every event still open (to resume rule state after a restart)."""
        sql = f"SELECT {_COLUMNS} FROM anomalies WHERE ended_at IS NULL"  # noqa: S608
        return [_event(row) for row in self._db.query(sql)]

    def anomalies(
        self,
        scope: Scope,
        *,
        object_id: str | Sequence[str] | None = None,
        metric: str | Sequence[str] | None = None,
        rule: str | None = None,
        state: str = "all",
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
    ) -> list[AnomalyEvent]:
        """Events visible in ``scope`` (by the client that owned the device then), newest first.

        Only events overlapping [since, until); ``object_id`` and ``metric`` take one value
        or a list of them.
        """
        condition, params = in_scope(scope, "client")
        where = [condition]
        args: list[Any] = list(params)
        for column, value in (("object_id", object_id), ("metric", metric), ("rule", rule)):
            if value is None:
                continue
            values = [value] if isinstance(value, str) else list(value)
            where.append(f"{column} IN ({','.join('?' * len(values))})" if values else "0")
            args.extend(values)
        conditions, values = event_conditions(state, since, until, mark="?")
        where += conditions
        args += values
        sql = (
            f"SELECT {_COLUMNS} FROM anomalies WHERE {' AND '.join(where)} "  # noqa: S608
            "ORDER BY started_at DESC, id DESC LIMIT ?"
        )
        return [_event(row) for row in self._db.query(sql, [*args, limit])]

    def anomaly_counts(self, object_id: str) -> tuple[int, int]:
        """(open, total) anomaly events of one object, under its current owner."""
        row = self._db.query(
            "SELECT COUNT(*) FILTER (WHERE a.ended_at IS NULL), COUNT(*) FROM anomalies a "
            "JOIN objects o ON o.id = a.object_id AND o.client = a.client WHERE a.object_id=?",
            (object_id,),
        )[0]
        return int(row[0]), int(row[1])


def _with_last(event: AnomalyEvent) -> AnomalyEvent:
    return replace(event, last_value=event.value)


def _outbox(db: sqlite3.Connection, event_id: int, transition: str, edge_id: str, now: float) -> None:
    row = db.execute(f"SELECT {_COLUMNS} FROM anomalies WHERE id=?", (event_id,)).fetchone()  # noqa: S608
    if row is None:
        return
    event = _event(tuple(row))
    db.execute(
        "INSERT OR IGNORE INTO outbox (event_id, transition, client, severity, payload, "
        "idempotency_key, created_at) VALUES (?,?,?,?,?,?,?)",
        (
            event_id,
            transition,
            event.client,
            event.severity,
            json.dumps(anomaly_json(event, edge_id=edge_id)),
            f"{edge_id}:{event_id}:{transition}",
            now,
        ),
    )


def anomaly_json(event: AnomalyEvent, *, edge_id: str | None = None) -> dict[str, Any]:
    """The public JSON form of an anomaly event (API responses, Grafana and notifications)."""
    body: dict[str, Any] = {
        "event_id": event.id,
        **{name: getattr(event, name) for name in ANOMALY_FIELDS},
        "started_at": iso_utc(event.started_at),
        "ended_at": iso_utc(event.ended_at) if event.ended_at is not None else None,
        "started_at_ms": epoch_ms(event.started_at),
        "ended_at_ms": epoch_ms(event.ended_at) if event.ended_at is not None else None,
        "state": "open" if event.ended_at is None else "resolved",
    }
    if edge_id is not None:
        body["edge_id"] = edge_id
    return body
