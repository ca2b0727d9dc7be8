"""Readings: batched idempotent writes, latest values, windows, statistics and down-sampling.

Every read of one object's history is limited to the readings recorded while its current
owner owned it (``readings.client`` = ``objects.client``): a device moved to another client
brings none of its past with it.
"""

import math
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from iotedge.edge.normalise import Reading
from iotedge.edge.store import rollups, windows
from iotedge.edge.store.connection import SqliteDatabase
from iotedge.edge.store.records import ClientAnswer, ObjectAnswer, ObjectRow, Scope
from iotedge.edge.store.rollups import ReadingRow
from iotedge.edge.store.summaries import Bucket, Summary, clamped_mean, from_moments, pool

__all__ = [
    "ReadingsMixin",
    "client_answer_of",
    "client_objects_of",
    "client_objects_sql",
    "in_scope",
    "object_answer_of",
    "object_answer_sql",
    "summaries_of",
]

_MAX_SQL_IDS = 5_000  # ids per IN (...) list, far below SQLite's variable limit
# Readings of an object recorded under the owner the catalogue names now.
_OWNED = "JOIN objects o ON o.id = r.object_id AND o.client = r.client"
# The same for one object (bound to its id): looked up once, not joined row by row.
_OWNER_OF = "r.client = (SELECT client FROM objects WHERE id = ?)"


def in_scope(scope: Scope, column: str) -> tuple[str, list[str]]:
    """A SQL condition restricting ``column`` to the scope, and its parameters."""
    if scope is None:
        return "1", []
    if not scope:
        return "0", []
    return f"{column} IN ({','.join('?' * len(scope))})", sorted(scope)


def object_answer_sql(scope_condition: str, mark: str = "?") -> str:
    """One object visible under ``scope_condition`` (on ``o.client``), its anomaly counts under its
    owner, and every latest row of it; parameters: the object id twice, then the scope's.

    The owner's latest rows are ``latest_of``; the metrics of all of them drive the window
    statistics, as the ``latest`` table drives ``client_moments``. ``mark`` is the driver's
    placeholder (``?`` for SQLite, ``%s`` for psycopg).
    """
    return (
        "SELECT o.id, o.client, o.type, o.first_seen, o.last_listed, c.n_open, c.n_total, "  # noqa: S608
        "l.metric, l.ts, l.value, l.client FROM objects o CROSS JOIN (SELECT "
        "COUNT(*) FILTER (WHERE a.ended_at IS NULL) AS n_open, COUNT(*) AS n_total FROM anomalies a "
        f"JOIN objects ao ON ao.id = a.object_id AND ao.client = a.client WHERE a.object_id = {mark}) c "
        f"LEFT JOIN latest l ON l.object_id = o.id WHERE o.id = {mark} AND {scope_condition}"
    )


def client_objects_sql(mark: str = "?") -> str:
    """A client's objects by id, each with its latest rows recorded under that owner."""
    return (
        "SELECT o.id, o.client, o.type, o.first_seen, o.last_listed, l.metric, l.ts, l.value "  # noqa: S608
        "FROM objects o LEFT JOIN latest l ON l.object_id = o.id AND l.client = o.client "
        f"WHERE o.client = {mark} ORDER BY o.id"
    )


_CLIENT_OBJECTS = client_objects_sql()


def object_answer_of(
    rows: Sequence[tuple[Any, ...]],
) -> tuple[ObjectRow, tuple[int, int], dict[str, tuple[float, float]], list[str]] | None:
    """(object, anomaly counts, ``latest_of``, metrics to summarise) from :func:`object_answer_sql`'s rows."""
    if not rows:
        return None
    first = rows[0]
    obj = ObjectRow(*first[:5])
    latest: dict[str, tuple[float, float]] = {}
    metrics: list[str] = []
    for *_, metric, ts, value, client in rows:
        if metric is None:
            continue
        metrics.append(metric)
        if client == obj.client:
            latest[metric] = (ts, value)
    return obj, (int(first[5]), int(first[6])), latest, metrics


def client_objects_of(
    rows: Sequence[tuple[Any, ...]],
) -> tuple[list[ObjectRow], list[tuple[str, str, float, float]]]:
    """From :func:`client_objects_sql`'s rows: the objects, and their latest readings recorded
    under their owner (object, metric, ts, value)."""
    objects: list[ObjectRow] = []
    latest: list[tuple[str, str, float, float]] = []
    for object_id, client, kind, first_seen, last_listed, metric, ts, value in rows:
        if not objects or objects[-1].id != object_id:
            objects.append(ObjectRow(object_id, client, kind, first_seen, last_listed))
        if metric is not None:
            latest.append((object_id, metric, ts, value))
    return objects, latest


def client_answer_of(
    moments: dict[tuple[str, str], windows.Moments],
    objects: list[ObjectRow],
    latest: Sequence[tuple[str, str, float, float]],
    since: float,
    until: float,
) -> ClientAnswer:
    """The :class:`ClientAnswer` from the client's moments, objects and latest readings."""
    newest = {(o, m): (ts, value) for o, m, ts, value in latest if since <= ts < until}
    per_metric, per_object = summaries_of(moments, newest)
    return ClientAnswer(per_metric, per_object, objects)


def summaries_of(
    moments: dict[tuple[str, str], windows.Moments], latest: dict[tuple[str, str], tuple[float, float]]
) -> tuple[dict[str, Summary], dict[str, dict[str, Summary]]]:
    """Per-metric and per-object summaries of a client's moments and its newest readings in the window."""
    per_object: dict[str, dict[str, Summary]] = {}
    by_metric: dict[str, list[Summary]] = {}
    for (object_id, metric), (count, total, low, high, squares) in sorted(moments.items()):
        summary = from_moments(count, total, low, high, squares, latest.get((object_id, metric)))
        per_object.setdefault(object_id, {})[metric] = summary
        by_metric.setdefault(metric, []).append(summary)
    return {metric: pool(parts) for metric, parts in by_metric.items()}, per_object


_INSERT = "INSERT OR IGNORE INTO readings (object_id, metric, ts, value, client) VALUES (?,?,?,?,?)"


class _Mixed(Exception):
    """A batch held both new and known readings: its transaction is undone and replayed."""


def _insert_new(db: sqlite3.Connection, rows: list[ReadingRow], *, one_by_one: bool) -> list[ReadingRow]:
    """Insert ``rows`` (ignoring known ones) and return those that were new.

    One ``executemany`` settles the usual batches, all new or all known. Only a row's own
    insert tells whether it was new, so a mixed batch raises :class:`_Mixed` (its caller
    undoes the transaction) and is replayed ``one_by_one``. Not a savepoint: inside one,
    SQLite copies every page it first changes to a statement journal (2 µs of each
    reading's 13 in a poll batch).
    """
    if one_by_one:
        return [row for row in rows if db.execute(_INSERT, row).rowcount == 1]
    before = db.total_changes
    db.executemany(_INSERT, rows)
    inserted = db.total_changes - before
    if inserted == len(rows):
        return rows
    if inserted == 0:
        return []
    raise _Mixed


class ReadingsMixin:
    """The readings half of the SQLite store."""

    _db: SqliteDatabase
    path: Path
    watermark_moves: int
    """How many writes moved the rollup watermark (they close minutes for every series, so an
    answer computed before may be cut into other pieces now: equal but for the last bit)."""

    def insert_readings(self, readings: list[Reading]) -> int:
        """Store a batch in one transaction; duplicates (same object, metric, time) are ignored.

        Each reading keeps the client it names (the owner when it was taken). Returns how
        many readings were new.
        """
        if not readings:
            return 0
        rows = [(r.object_id, r.metric, r.ts, r.value, r.client) for r in readings]
        try:
            return self._insert_batch(rows, one_by_one=False)
        except _Mixed:
            return self._insert_batch(rows, one_by_one=True)

    def _insert_batch(self, rows: list[ReadingRow], *, one_by_one: bool) -> int:
        with self._db.write() as db:
            fresh = _insert_new(db, rows, one_by_one=one_by_one)
            db.executemany(
                "INSERT INTO latest (object_id, metric, ts, value, client) VALUES (?,?,?,?,?) "
                "ON CONFLICT (object_id, metric) DO UPDATE SET ts=excluded.ts, value=excluded.value, "
                "client=excluded.client WHERE excluded.ts >= latest.ts",
                rows,
            )
            moved = rollups.add(db, fresh)
        self.watermark_moves += moved
        return len(fresh)

    def latest(self, scope: Scope = None) -> list[tuple[str, str, str, float, float]]:
        """(object_id, client, metric, ts, value) of the newest reading per object and metric."""
        condition, params = in_scope(scope, "o.client")
        return self._db.query(
            "SELECT r.object_id, o.client, r.metric, r.ts, r.value FROM latest r "  # noqa: S608
            f"{_OWNED} WHERE {condition}",
            params,
        )

    def latest_of(self, object_id: str) -> dict[str, tuple[float, float]]:
        """metric -> (ts, value) of one object's newest readings."""
        rows = self._db.query(
            f"SELECT r.metric, r.ts, r.value FROM latest r {_OWNED} WHERE r.object_id=?",  # noqa: S608
            (object_id,),
        )
        return {metric: (ts, value) for metric, ts, value in rows}

    def raw_series(
        self, object_id: str, metric: str, since: float, until: float, limit: int
    ) -> list[tuple[float, float]]:
        """The newest ``limit`` readings in [since, until), ascending in time."""
        rows = self._db.query(
            "SELECT r.ts, r.value FROM readings r WHERE r.object_id=? AND r.metric=? "  # noqa: S608
            f"AND r.ts>=? AND r.ts<? AND {_OWNER_OF} ORDER BY r.ts DESC LIMIT ?",
            (object_id, metric, since, until, object_id, limit),
        )
        return [(ts, value) for ts, value in reversed(rows)]

    def summary(self, object_id: str, metric: str, since: float, until: float) -> Summary:
        """Statistics of one object's metric over [since, until) (rollups plus raw edges)."""
        return windows.summary(self._db.query, object_id, metric, since, until)

    def client_summaries(
        self, client: str, since: float, until: float
    ) -> tuple[dict[str, Summary], dict[str, dict[str, Summary]]]:
        """Per-metric statistics across a client's objects, and per object and metric."""
        moments = windows.client_moments(self._db.query, client, since, until)
        latest = {
            (object_id, metric): (ts, value)
            for object_id, _, metric, ts, value in self.latest(frozenset({client}))
            if since <= ts < until
        }
        return summaries_of(moments, latest)

    def object_answer(self, object_id: str, scope: Scope, since: float, until: float) -> ObjectAnswer | None:
        """``object``, ``summary`` of each metric, ``latest_of`` and ``anomaly_counts`` in two statements.

        None when the object does not exist or is not visible in ``scope``.
        """
        condition, params = in_scope(scope, "o.client")
        found = object_answer_of(
            self._db.query(object_answer_sql(condition), [object_id, object_id, *params])
        )
        if found is None:
            return None
        obj, (open_count, total), latest, metrics = found
        summaries = (
            windows.object_summaries(self._db.query, obj.id, obj.client, metrics, since, until)
            if metrics
            else {}
        )
        return ObjectAnswer(obj, summaries, latest, open_count, total)

    def client_answer(self, client: str, since: float, until: float) -> ClientAnswer:
        """``client_summaries`` and ``objects`` of one client, in two statements."""
        moments = windows.owned_moments(self._db.query, client, since, until)
        objects, latest = client_objects_of(self._db.query(_CLIENT_OBJECTS, (client,)))
        return client_answer_of(moments, objects, latest, since, until)

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
        all ``object_ids`` in [since, until) that fall into it. A grid of whole minutes is
        read from the rollups between the window's raw edges.
        """
        start = since if origin is None else origin
        merged: dict[int, list[float]] = {}
        for first in range(0, len(object_ids), _MAX_SQL_IDS):
            chunk = list(object_ids[first : first + _MAX_SQL_IDS])
            rows = windows.bucket_rows(self._db.query, chunk, metric, since, until, step, start)
            for b, total, low, high, count in rows:
                acc = merged.setdefault(b, [0.0, math.inf, -math.inf, 0])
                acc[0] += total
                acc[1] = min(acc[1], low)
                acc[2] = max(acc[2], high)
                acc[3] += count
        return [
            Bucket(
                start + b * step,
                clamped_mean(acc[0], int(acc[3]), acc[1], acc[2]),
                acc[1],
                acc[2],
                int(acc[3]),
            )
            for b, acc in sorted(merged.items())
            if acc[3]
        ]

    def recent_values(self, object_id: str, metric: str, limit: int) -> list[float]:
        """The newest ``limit`` values of one metric under its current owner, oldest first."""
        rows = self._db.query(
            f"SELECT r.value FROM readings r WHERE r.object_id=? AND r.metric=? AND {_OWNER_OF} "  # noqa: S608
            "ORDER BY r.ts DESC LIMIT ?",
            (object_id, metric, object_id, limit),
        )
        return [row[0] for row in reversed(rows)]

    def prune(self, before: float, *, rollups_before: float | None = None) -> int:
        """Delete readings older than ``before``; returns how many.

        Without ``rollups_before`` the rollups follow the readings (the bucket ``before`` cuts
        is recomputed), so they always equal the raw rows. With it, the buckets that end
        before ``rollups_before`` are dropped and those of the deleted readings are kept: a
        long window is then answered from rollups after its raw rows are gone.
        """
        with self._db.write() as db:
            rollups.close(db, before)
            removed = int(db.execute("DELETE FROM readings WHERE ts < ?", (before,)).rowcount)
            if rollups_before is not None:
                rollups.expire(db, rollups_before)
            elif removed:
                rollups.prune(db, before)
        return removed

    def count_readings(self) -> int:
        """How many readings are stored."""
        return int(self._db.query("SELECT COUNT(*) FROM readings")[0][0])

    def size_bytes(self) -> int:
        """Size of the database files on disk."""
        total = 0
        for suffix in ("", "-wal"):
            candidate = Path(str(self.path) + suffix)
            if candidate.exists():
                total += candidate.stat().st_size
        return total
