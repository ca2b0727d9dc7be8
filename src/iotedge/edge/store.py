"""The local SQLite store: readings, latest values, anomaly events and the outbox.

One file, WAL journal, ``synchronous=FULL`` so a committed batch survives a crash of the
process or the machine. Statistics and down-sampling run in SQL, next to the data.
Every read that returns client data takes a ``Scope``: the set of clients the caller
may see (None = all), so no query can forget tenant isolation.
"""

import json
import math
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iotedge.edge.normalise import CatalogueEntry, Reading
from iotedge.edge.timefmt import epoch_ms, iso_utc
from iotedge.errors import StoreError

__all__ = [
    "OUTBOX_DDL",
    "AnomalyRecord",
    "Bucket",
    "NewAnomaly",
    "ObjectRow",
    "Scope",
    "Store",
    "Summary",
    "anomaly_json",
]

Scope = frozenset[str] | None
"""Clients a caller may see; None means every client."""

_MAX_SQL_IDS = 5_000  # ids per IN (...) list, far below SQLite's variable limit

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
  id TEXT PRIMARY KEY,
  client TEXT NOT NULL,
  type TEXT NOT NULL,
  first_seen REAL NOT NULL,
  last_listed REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS objects_client ON objects (client);
CREATE TABLE IF NOT EXISTS readings (
  object_id TEXT NOT NULL,
  metric TEXT NOT NULL,
  ts REAL NOT NULL,
  value REAL NOT NULL,
  PRIMARY KEY (object_id, metric, ts)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS latest (
  object_id TEXT NOT NULL,
  metric TEXT NOT NULL,
  ts REAL NOT NULL,
  value REAL NOT NULL,
  PRIMARY KEY (object_id, metric)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS anomalies (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  object_id TEXT NOT NULL,
  client TEXT NOT NULL,
  type TEXT NOT NULL,
  metric TEXT NOT NULL,
  rule TEXT NOT NULL,
  severity TEXT NOT NULL,
  value REAL,
  threshold REAL,
  message TEXT NOT NULL,
  started_at REAL NOT NULL,
  ended_at REAL,
  last_value REAL
);
CREATE INDEX IF NOT EXISTS anomalies_client_started ON anomalies (client, started_at);
CREATE INDEX IF NOT EXISTS anomalies_open ON anomalies (ended_at) WHERE ended_at IS NULL;
"""

# Notifications to send, written in the same transaction as the anomaly transition they
# announce; the notification drainer (iotedge.edge.notify) reads it.
OUTBOX_DDL = """
CREATE TABLE IF NOT EXISTS outbox (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  event_id INTEGER NOT NULL,
  transition TEXT NOT NULL,
  client TEXT NOT NULL,
  severity TEXT NOT NULL,
  payload TEXT NOT NULL,
  idempotency_key TEXT NOT NULL UNIQUE,
  created_at REAL NOT NULL
)
"""


@dataclass(frozen=True, slots=True)
class ObjectRow:
    """An object the edge knows."""

    id: str
    client: str
    type: str
    first_seen: float
    last_listed: float


@dataclass(frozen=True, slots=True)
class Summary:
    """Window statistics of one metric (population standard deviation)."""

    count: int
    average: float | None
    min: float | None
    max: float | None
    stddev: float | None
    last: float | None
    last_at: float | None

    def as_json(self) -> dict[str, float | int | None]:
        """The API's ``statistics`` object."""
        return {
            "count": self.count,
            "average": _round(self.average),
            "min": self.min,
            "max": self.max,
            "stddev": _round(self.stddev),
            "last": self.last,
        }


@dataclass(frozen=True, slots=True)
class Bucket:
    """One step of a down-sampled series; ``ts`` is the bucket start (epoch seconds)."""

    ts: float
    average: float
    min: float
    max: float
    count: int


@dataclass(frozen=True, slots=True)
class NewAnomaly:
    """An anomaly event a rule just opened (and, within the same batch, maybe closed again)."""

    object_id: str
    client: str
    type: str
    metric: str
    rule: str
    severity: str
    value: float | None
    threshold: float | None
    message: str
    started_at: float
    ended_at: float | None = None
    last_value: float | None = None


@dataclass(frozen=True, slots=True)
class AnomalyRecord:
    """A stored anomaly event; ``ended_at`` is None while it is open."""

    id: int
    object_id: str
    client: str
    type: str
    metric: str
    rule: str
    severity: str
    value: float | None
    threshold: float | None
    message: str
    started_at: float
    ended_at: float | None
    last_value: float | None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _mean(total: float, count: int, low: float, high: float) -> float:
    """total / count, kept within [low, high]: summing floats can overshoot by an ulp."""
    return min(max(total / count, low), high)


def _stats_row(row: tuple[Any, ...], last: tuple[float, float] | None) -> Summary:
    count, total, low, high, squares = row
    if not count:
        return Summary(0, None, None, None, None, None, None)
    mean = _mean(total, count, low, high)
    variance = max(0.0, squares / count - mean * mean)
    return Summary(
        count=count,
        average=mean,
        min=low,
        max=high,
        stddev=math.sqrt(variance),
        last=last[1] if last else None,
        last_at=last[0] if last else None,
    )


def _in_scope(scope: Scope, column: str) -> tuple[str, list[str]]:
    """A SQL condition restricting ``column`` to the scope, and its parameters."""
    if scope is None:
        return "1", []
    if not scope:
        return "0", []
    return f"{column} IN ({','.join('?' * len(scope))})", sorted(scope)


class Store:
    """The edge's SQLite store. Not thread-safe by design: use it from the event loop."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(_SCHEMA + OUTBOX_DDL + ";")
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open the store at {path}: {exc}") from exc
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the database (committed data is already on disk)."""
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(f"store write failed: {exc}") from exc

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._db.execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"store read failed: {exc}") from exc

    def writable(self) -> bool:
        """Whether a write transaction can be taken now (for readiness)."""
        try:
            with self._tx() as db:
                db.execute("SELECT 1")
        except StoreError:
            return False
        return True

    # -- objects ----------------------------------------------------------------------

    def upsert_objects(self, entries: Iterable[CatalogueEntry], now: float) -> None:
        """Record the catalogue as seen at ``now``."""
        rows = [(e.id, e.client, e.type, now, now) for e in entries]
        with self._tx() as db:
            db.executemany(
                "INSERT INTO objects (id, client, type, first_seen, last_listed) VALUES (?,?,?,?,?) "
                "ON CONFLICT (id) DO UPDATE SET client=excluded.client, type=excluded.type, "
                "last_listed=excluded.last_listed",
                rows,
            )

    def objects(self, scope: Scope) -> list[ObjectRow]:
        """The objects visible in ``scope``, by id."""
        condition, params = _in_scope(scope, "client")
        rows = self._query(f"SELECT * FROM objects WHERE {condition} ORDER BY id", params)  # noqa: S608
        return [ObjectRow(*row) for row in rows]

    def object(self, object_id: str, scope: Scope) -> ObjectRow | None:
        """One object if it exists and is visible in ``scope``."""
        rows = self._query("SELECT * FROM objects WHERE id = ?", (object_id,))
        if not rows:
            return None
        row = ObjectRow(*rows[0])
        return row if scope is None or row.client in scope else None

    def clients(self, scope: Scope) -> list[str]:
        """The clients visible in ``scope`` that have objects."""
        condition, params = _in_scope(scope, "client")
        sql = f"SELECT DISTINCT client FROM objects WHERE {condition} ORDER BY client"  # noqa: S608
        return [row[0] for row in self._query(sql, params)]

    # -- readings ---------------------------------------------------------------------

    def insert_readings(self, readings: list[Reading]) -> int:
        """Store a batch in one transaction; duplicates (same object, metric, time) are ignored.

        Returns how many readings were new.
        """
        if not readings:
            return 0
        rows = [(r.object_id, r.metric, r.ts, r.value) for r in readings]
        with self._tx() as db:
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO readings VALUES (?,?,?,?)", rows)
            inserted = db.total_changes - before
            db.executemany(
                "INSERT INTO latest VALUES (?,?,?,?) ON CONFLICT (object_id, metric) DO UPDATE "
                "SET ts=excluded.ts, value=excluded.value WHERE excluded.ts >= latest.ts",
                rows,
            )
        return inserted

    def latest(self, scope: Scope = None) -> list[tuple[str, str, str, float, float]]:
        """(object_id, client, metric, ts, value) of the newest reading per object and metric."""
        condition, params = _in_scope(scope, "o.client")
        return self._query(
            "SELECT l.object_id, o.client, l.metric, l.ts, l.value FROM latest l "  # noqa: S608
            f"JOIN objects o ON o.id = l.object_id WHERE {condition}",
            params,
        )

    def latest_of(self, object_id: str) -> dict[str, tuple[float, float]]:
        """metric -> (ts, value) of one object's newest readings."""
        rows = self._query("SELECT metric, ts, value FROM latest WHERE object_id=?", (object_id,))
        return {metric: (ts, value) for metric, ts, value in rows}

    def raw_series(
        self, object_id: str, metric: str, since: float, until: float, limit: int
    ) -> list[tuple[float, float]]:
        """The newest ``limit`` readings in [since, until), ascending in time."""
        rows = self._query(
            "SELECT ts, value FROM readings WHERE object_id=? AND metric=? AND ts>=? AND ts<? "
            "ORDER BY ts DESC LIMIT ?",
            (object_id, metric, since, until, limit),
        )
        return rows[::-1]

    def summary(self, object_id: str, metric: str, since: float, until: float) -> Summary:
        """Statistics of one object's metric over [since, until)."""
        row = self._query(
            "SELECT COUNT(value), TOTAL(value), MIN(value), MAX(value), TOTAL(value*value) "
            "FROM readings WHERE object_id=? AND metric=? AND ts>=? AND ts<?",
            (object_id, metric, since, until),
        )[0]
        last = self._query(
            "SELECT ts, value FROM readings WHERE object_id=? AND metric=? AND ts>=? AND ts<? "
            "ORDER BY ts DESC LIMIT 1",
            (object_id, metric, since, until),
        )
        return _stats_row(row, last[0] if last else None)

    def client_summaries(
        self, client: str, since: float, until: float
    ) -> tuple[dict[str, Summary], dict[str, dict[str, Summary]]]:
        """Per-metric statistics across a client's objects, and per object and metric."""
        rows = self._query(
            "SELECT r.object_id, r.metric, COUNT(r.value), TOTAL(r.value), MIN(r.value), "
            "MAX(r.value), TOTAL(r.value*r.value) FROM objects o JOIN readings r "
            "ON r.object_id = o.id WHERE o.client=? AND r.ts>=? AND r.ts<? "
            "GROUP BY r.object_id, r.metric",
            (client, since, until),
        )
        latest = {
            (object_id, metric): (ts, value)
            for object_id, _, metric, ts, value in self.latest(frozenset({client}))
            if since <= ts < until
        }
        per_object: dict[str, dict[str, Summary]] = {}
        totals: dict[str, list[float]] = {}
        newest: dict[str, tuple[float, float]] = {}
        for object_id, metric, count, total, low, high, squares in rows:
            last = latest.get((object_id, metric))
            per_object.setdefault(object_id, {})[metric] = _stats_row(
                (count, total, low, high, squares), last
            )
            acc = totals.setdefault(metric, [0, 0.0, math.inf, -math.inf, 0.0])
            acc[0] += count
            acc[1] += total
            acc[2] = min(acc[2], low)
            acc[3] = max(acc[3], high)
            acc[4] += squares
            if last is not None and (metric not in newest or last[0] > newest[metric][0]):
                newest[metric] = last
        per_metric = {
            metric: _stats_row((int(a[0]), a[1], a[2], a[3], a[4]), newest.get(metric))
            for metric, a in totals.items()
        }
        return per_metric, per_object

    def bucketed(
        self,
        object_ids: Sequence[str],
        metric: str,
        since: float,
        until: float,
        step: float,
        *,
        origin: float | None = None,
    ) -> list[Bucket]:
        """Down-sampled series of several objects together (one object: its own series).

        Buckets start at ``origin + k * step`` (default ``since``) so that a moving window
        keeps the same grid; each holds the average, min, max and count of the readings of
        all ``object_ids`` in [since, until) that fall into it.
        """
        start = since if origin is None else origin
        merged: dict[int, list[float]] = {}
        for first in range(0, len(object_ids), _MAX_SQL_IDS):
            chunk = list(object_ids[first : first + _MAX_SQL_IDS])
            rows = self._query(
                "SELECT CAST((ts - ?) / ? AS INTEGER) AS b, TOTAL(value), MIN(value), MAX(value), "  # noqa: S608
                f"COUNT(value) FROM readings WHERE object_id IN ({','.join('?' * len(chunk))}) "
                "AND metric=? AND ts>=? AND ts<? GROUP BY b",
                (start, step, *chunk, metric, since, until),
            )
            for b, total, low, high, count in rows:
                acc = merged.setdefault(b, [0.0, math.inf, -math.inf, 0])
                acc[0] += total
                acc[1] = min(acc[1], low)
                acc[2] = max(acc[2], high)
                acc[3] += count
        return [
            Bucket(start + b * step, _mean(acc[0], int(acc[3]), acc[1], acc[2]), acc[1], acc[2], int(acc[3]))
            for b, acc in sorted(merged.items())
            if acc[3]
        ]

    def recent_values(self, object_id: str, metric: str, limit: int) -> list[float]:
        """The newest ``limit`` values of one metric, oldest first."""
        rows = self._query(
            "SELECT value FROM readings WHERE object_id=? AND metric=? ORDER BY ts DESC LIMIT ?",
            (object_id, metric, limit),
        )
        return [row[0] for row in reversed(rows)]

    def prune(self, before: float) -> int:
        """Delete readings older than ``before``; returns how many."""
        with self._tx() as db:
            return db.execute("DELETE FROM readings WHERE ts < ?", (before,)).rowcount

    def count_readings(self) -> int:
        """How many readings are stored."""
        return int(self._query("SELECT COUNT(*) FROM readings")[0][0])

    def size_bytes(self) -> int:
        """Size of the database files on disk."""
        total = 0
        for suffix in ("", "-wal"):
            candidate = Path(str(self.path) + suffix)
            if candidate.exists():
                total += candidate.stat().st_size
        return total

    # -- anomalies and outbox ---------------------------------------------------------

    def record_transitions(
        self,
        opened: list[NewAnomaly],
        closed: list[tuple[int, float, float | None]],
        *,
        edge_id: str,
        now: float,
    ) -> list[int]:
        """Open and close anomaly events, writing their outbox rows in the same transaction.

        ``closed`` holds (event id, ended_at, last value). Returns the new events' ids.
        """
        ids: list[int] = []
        with self._tx() as db:
            for event in opened:
                cursor = db.execute(
                    "INSERT INTO anomalies (object_id, client, type, metric, rule, severity, value, "
                    "threshold, message, started_at, ended_at, last_value) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        event.object_id,
                        event.client,
                        event.type,
                        event.metric,
                        event.rule,
                        event.severity,
                        event.value,
                        event.threshold,
                        event.message,
                        event.started_at,
                        event.ended_at,
                        event.value if event.last_value is None else event.last_value,
                    ),
                )
                event_id = int(cursor.lastrowid or 0)
                ids.append(event_id)
                self._outbox(db, event_id, "opened", edge_id, now)
                if event.ended_at is not None:
                    self._outbox(db, event_id, "resolved", edge_id, now)
            for event_id, ended_at, last_value in closed:
                db.execute(
                    "UPDATE anomalies SET ended_at=?, last_value=COALESCE(?, last_value) "
                    "WHERE id=? AND ended_at IS NULL",
                    (ended_at, last_value, event_id),
                )
                self._outbox(db, event_id, "resolved", edge_id, now)
        return ids

    def _outbox(
        self, db: sqlite3.Connection, event_id: int, transition: str, edge_id: str, now: float
    ) -> None:
        row = db.execute("SELECT * FROM anomalies WHERE id=?", (event_id,)).fetchone()
        if row is None:
            return
        record = AnomalyRecord(*row)
        db.execute(
            "INSERT OR IGNORE INTO outbox (event_id, transition, client, severity, payload, "
            "idempotency_key, created_at) VALUES (?,?,?,?,?,?,?)",
            (
                event_id,
                transition,
                record.client,
                record.severity,
                json.dumps(anomaly_json(record, edge_id=edge_id)),
                f"{edge_id}:{event_id}:{transition}",
                now,
            ),
        )

    def open_anomalies(self) -> list[AnomalyRecord]:
        """Every event still open (to resume rule state after a restart)."""
        rows = self._query("SELECT * FROM anomalies WHERE ended_at IS NULL")
        return [AnomalyRecord(*row) for row in rows]

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
    ) -> list[AnomalyRecord]:
        """Events visible in ``scope``, newest first, overlapping [since, until).

        ``object_id`` and ``metric`` take one value or a list of them.
        """
        condition, params = _in_scope(scope, "client")
        where = [condition]
        args: list[Any] = list(params)
        for column, value in (("object_id", object_id), ("metric", metric), ("rule", rule)):
            if value is None:
                continue
            values = [value] if isinstance(value, str) else list(value)
            where.append(f"{column} IN ({','.join('?' * len(values))})" if values else "0")
            args.extend(values)
        if state == "open":
            where.append("ended_at IS NULL")
        elif state == "resolved":
            where.append("ended_at IS NOT NULL")
        if since is not None:
            where.append("(ended_at IS NULL OR ended_at >= ?)")
            args.append(since)
        if until is not None:
            where.append("started_at < ?")
            args.append(until)
        sql = (
            f"SELECT * FROM anomalies WHERE {' AND '.join(where)} "  # noqa: S608
            "ORDER BY started_at DESC, id DESC LIMIT ?"
        )
        return [AnomalyRecord(*row) for row in self._query(sql, [*args, limit])]

    def anomaly_counts(self, object_id: str) -> tuple[int, int]:
        """(open, total) anomaly events of one object."""
        row = self._query(
            "SELECT COUNT(*) FILTER (WHERE ended_at IS NULL), COUNT(*) FROM anomalies WHERE object_id=?",
            (object_id,),
        )[0]
        return int(row[0]), int(row[1])


def anomaly_json(record: AnomalyRecord, *, edge_id: str | None = None) -> dict[str, Any]:
    """The public JSON form of an anomaly event (API responses and notifications)."""
    body: dict[str, Any] = {
        "event_id": record.id,
        "object_id": record.object_id,
        "client": record.client,
        "type": record.type,
        "metric": record.metric,
        "rule": record.rule,
        "severity": record.severity,
        "value": record.value,
        "threshold": record.threshold,
        "last_value": record.last_value,
        "message": record.message,
        "started_at": iso_utc(record.started_at),
        "ended_at": iso_utc(record.ended_at) if record.ended_at is not None else None,
        "started_at_ms": epoch_ms(record.started_at),
        "ended_at_ms": epoch_ms(record.ended_at) if record.ended_at is not None else None,
        "state": "open" if record.ended_at is None else "resolved",
    }
    if edge_id is not None:
        body["edge_id"] = edge_id
    return body
