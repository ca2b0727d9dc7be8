"""Per-minute and per-hour rollups of the readings: how they are kept, and how windows use them.

A rollup row holds, for one (object, metric, owner, bucket), the count, sum, sum of squares,
min and max of the readings in ``[bucket, bucket + step)`` and the newest reading's time and
value. They are written in the same transaction as the readings, counting only readings that
were actually inserted, so a rollup is always exactly the aggregate of the raw rows it covers
(prune recomputes the one bucket it cuts through). A window's statistics then read the raw
rows of its two partial minutes, whole minutes up to the hour edges and whole hours between:
at most ~140 rows plus one per hour (720 for 30 days), instead of one row per reading.

The newest minutes are rolled up when they close, not reading by reading: ``rollup_state``
holds the *watermark*, a whole minute below which both levels are complete and at or above
which no reading is counted yet. A reading below it (a late one) is added to its buckets at
once; a batch whose newest reading lies in a later minute closes the minutes up to that one
from the raw rows, in the same transaction. A poll of every series then costs one bucket
write per series and level per minute instead of one per reading (the ingest rate doubles),
and windows read raw rows from the watermark on (:func:`split`'s ``rolled``).
"""

import math
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "HOUR",
    "LEVELS",
    "MINUTE",
    "STATE_DDL",
    "Piece",
    "ReadingRow",
    "add",
    "ceil_to",
    "close",
    "expire",
    "expiry_cut",
    "floor_to",
    "prune",
    "rebuild_sql",
    "rolled_upto",
    "split",
    "state_init_sql",
    "table_ddl",
]

MINUTE = 60
HOUR = 3600
LEVELS: tuple[tuple[str, int], ...] = (("rollup_minute", MINUTE), ("rollup_hour", HOUR))
"""(table, bucket width in seconds), finest first."""

ReadingRow = tuple[str, str, float, float, str]
"""(object_id, metric, ts, value, client), as the readings table holds them."""

Source = Literal["raw", "rollup_minute", "rollup_hour"]

# SQLite evaluates every SET expression on the old row, so last_value compares the old last_ts.
_MERGE = """ON CONFLICT (object_id, metric, client, bucket) DO UPDATE SET n = n + excluded.n,
  total = total + excluded.total, low = MIN(low, excluded.low), high = MAX(high, excluded.high),
  squares = squares + excluded.squares,
  last_value = CASE WHEN excluded.last_ts >= last_ts THEN excluded.last_value ELSE last_value END,
  last_ts = MAX(last_ts, excluded.last_ts)"""
_UPSERT = (
    "INSERT INTO {table} (object_id, metric, client, bucket, n, total, low, high, squares, "  # noqa: S608
    f"last_ts, last_value) VALUES (?,?,?,?,?,?,?,?,?,?,?) {_MERGE}"
)


STATE_DDL = """CREATE TABLE IF NOT EXISTS rollup_state (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  rolled_upto REAL NOT NULL
)"""
"""One row: the watermark (a whole minute, or -inf in a store that has rolled up nothing)."""


def table_ddl(table: str) -> str:
    """CREATE TABLE of one rollup level."""
    return f"""CREATE TABLE IF NOT EXISTS {table} (
  object_id TEXT NOT NULL,
  metric TEXT NOT NULL,
  client TEXT NOT NULL,
  bucket INTEGER NOT NULL,
  n INTEGER NOT NULL,
  total REAL NOT NULL,
  low REAL NOT NULL,
  high REAL NOT NULL,
  squares REAL NOT NULL,
  last_ts REAL NOT NULL,
  last_value REAL NOT NULL,
  PRIMARY KEY (object_id, metric, client, bucket)
) WITHOUT ROWID"""


# A timestamp next to a bucket edge can land one bucket off after a float division;
# both sides (``floor_to`` and this SQL) correct by one step so that bucket <= ts < bucket + step
# holds exactly, and the two always agree.
def _bucket_sql(column: str, step: int) -> str:
    start = f"(CAST({column} / {step} AS INTEGER) * {step})"
    return f"({start} - {step} * ({start} > {column}) + {step} * ({start} + {step} <= {column}))"


def rebuild_sql(table: str, step: int, condition: str = "1") -> str:
    """INSERT of ``table``'s buckets computed from the readings matching ``condition``."""
    bucket = _bucket_sql("ts", step)
    return (
        f"INSERT INTO {table} (object_id, metric, client, bucket, n, total, low, high, squares, "  # noqa: S608
        "last_ts, last_value) SELECT g.object_id, g.metric, g.client, g.bucket, g.n, g.total, g.low, "
        "g.high, g.squares, g.last_ts, r.value FROM (SELECT object_id, metric, client, "
        f"{bucket} AS bucket, COUNT(*) AS n, TOTAL(value) AS total, MIN(value) AS low, "
        "MAX(value) AS high, TOTAL(value * value) AS squares, MAX(ts) AS last_ts "
        f"FROM readings WHERE {condition} GROUP BY object_id, metric, client, bucket) g "
        "JOIN readings r ON r.object_id = g.object_id AND r.metric = g.metric AND r.ts = g.last_ts"
    )


def state_init_sql() -> str:
    """INSERT of the watermark of a store whose rollups are complete: the minute after its newest reading.

    ``latest`` holds every series' newest time; the minute rollups' newest bucket stands in
    only if ``latest`` is empty (it never is while readings are stored).
    """
    return (
        "INSERT INTO rollup_state (id, rolled_upto) SELECT 1, "  # noqa: S608
        f"COALESCE({_bucket_sql('newest', MINUTE)} + {MINUTE}, "
        f"(SELECT MAX(bucket) FROM rollup_minute) + {MINUTE}, -9e999) "
        "FROM (SELECT MAX(ts) AS newest FROM latest)"
    )


# The readings of every series in [?, ?), driven by ``latest`` (one row per series that has
# readings) so that each series is a range of the readings' key, not a scan of the table.
def _close_sql(table: str, step: int) -> str:
    bucket = _bucket_sql("r.ts", step)
    return (
        f"INSERT INTO {table} (object_id, metric, client, bucket, n, total, low, high, squares, "  # noqa: S608
        "last_ts, last_value) SELECT g.object_id, g.metric, g.client, g.bucket, g.n, g.total, g.low, "
        "g.high, g.squares, g.last_ts, x.value FROM (SELECT r.object_id, r.metric, r.client, "
        f"{bucket} AS bucket, COUNT(*) AS n, TOTAL(r.value) AS total, MIN(r.value) AS low, "
        "MAX(r.value) AS high, TOTAL(r.value * r.value) AS squares, MAX(r.ts) AS last_ts "
        "FROM latest s CROSS JOIN readings r WHERE r.object_id = s.object_id AND r.metric = s.metric "
        "AND r.ts >= ? AND r.ts < ? GROUP BY r.object_id, r.metric, r.client, bucket) g "
        "JOIN readings x ON x.object_id = g.object_id AND x.metric = g.metric AND x.ts = g.last_ts "
        f"WHERE 1 {_MERGE}"
    )


def floor_to(ts: float, step: int) -> int:
    """The multiple of ``step`` at or below ``ts`` (exactly: result <= ts < result + step)."""
    start = math.floor(ts / step) * step
    if start > ts:
        start -= step
    elif start + step <= ts:
        start += step
    return start


def ceil_to(ts: float, step: int) -> int:
    """The multiple of ``step`` at or above ``ts``."""
    start = floor_to(ts, step)
    return start if start == ts else start + step


@dataclass(frozen=True, slots=True)
class Piece:
    """Part of a window read from one source: raw rows in [lo, hi) or buckets starting in it."""

    source: Source
    lo: float
    hi: float


def split(since: float, until: float, rolled: float = math.inf) -> list[Piece]:
    """[since, until) as raw edges, whole minutes and whole hours, in time order.

    ``rolled`` is the watermark (:func:`rolled_upto`, a whole minute): buckets are read only
    below it, raw rows from it on.
    """
    if not (math.isfinite(since) and math.isfinite(until)) or until <= since:
        return [Piece("raw", since, until)]
    m0, m1 = ceil_to(since, MINUTE), min(floor_to(until, MINUTE), rolled)
    if m0 >= m1:
        return [Piece("raw", since, until)]
    h0, h1 = ceil_to(since, HOUR), floor_to(m1, HOUR)
    middle = (
        [Piece("rollup_minute", m0, h0), Piece("rollup_hour", h0, h1), Piece("rollup_minute", h1, m1)]
        if h0 < h1
        else [Piece("rollup_minute", m0, m1)]
    )
    pieces = [Piece("raw", since, m0), *middle, Piece("raw", m1, until)]
    return [p for p in pieces if p.lo < p.hi]


def _aggregate(rows: Iterable[ReadingRow], step: int) -> list[tuple[object, ...]]:
    acc: dict[tuple[str, str, str, int], list[float]] = {}
    for object_id, metric, ts, value, client in rows:
        key = (object_id, metric, client, floor_to(ts, step))
        a = acc.get(key)
        if a is None:
            acc[key] = [1, value, value, value, value * value, ts, value]
            continue
        a[0] += 1
        a[1] += value
        a[2] = min(a[2], value)
        a[3] = max(a[3], value)
        a[4] += value * value
        if ts >= a[5]:
            a[5], a[6] = ts, value
    return [(*key, int(a[0]), *a[1:]) for key, a in acc.items()]


def rolled_upto(query: Callable[[str, Iterable[Any]], list[tuple[Any, ...]]]) -> float:
    """The watermark: both levels hold every reading before it and none at or after it."""
    rows = query("SELECT rolled_upto FROM rollup_state", ())
    return float(rows[0][0]) if rows else math.inf


def _watermark(db: sqlite3.Connection) -> float:
    return rolled_upto(lambda sql, params: db.execute(sql, tuple(params)).fetchall())


def add(db: sqlite3.Connection, rows: Sequence[ReadingRow]) -> bool:
    """Count newly inserted readings (object_id, metric, ts, value, client) into every level.

    Readings before the watermark go into their buckets now; the others when their minute
    closes, which happens here once the newest of ``rows`` is in a later minute. Call it
    after ``latest`` holds the rows' series. Returns whether the watermark moved (a window
    of any series may then be cut into other pieces).
    """
    if not rows:
        return False
    rolled = _watermark(db)
    late = [row for row in rows if row[2] < rolled]
    if late:
        for table, step in LEVELS:
            db.executemany(_UPSERT.format(table=table), _aggregate(late, step))
    newest = max(row[2] for row in rows)
    if newest < rolled + MINUTE:
        return False
    _close(db, rolled, floor_to(newest, MINUTE))
    return True


def _close(db: sqlite3.Connection, rolled: float, upto: float) -> None:
    for table, step in LEVELS:
        db.execute(_close_sql(table, step), (rolled, upto))
    db.execute("UPDATE rollup_state SET rolled_upto = ?", (upto,))


def close(db: sqlite3.Connection, before: float) -> None:
    """Roll up every reading before ``before`` (rounded up to a minute): call it before raw rows go."""
    if math.isnan(before):
        return
    rolled = _watermark(db)
    newest = db.execute("SELECT MAX(ts) FROM latest").fetchone()[0]
    if newest is None:
        return
    # Nothing is stored past the newest reading's minute: close no further than that.
    cut = ceil_to(before, MINUTE) if math.isfinite(before) else before
    upto = min(cut, floor_to(newest, MINUTE) + MINUTE)
    if upto > rolled:
        _close(db, rolled, upto)


def expiry_cut(before: float) -> float:
    """Where the rollups' own retention cuts: ``before`` floored to the coarsest bucket.

    Both levels are cut at the same instant, so a window never finds an hour whose minutes
    are gone (or the reverse).
    """
    return floor_to(before, max(step for _, step in LEVELS))


def expire(db: sqlite3.Connection, before: float) -> None:
    """Drop the buckets of every level older than :func:`expiry_cut` of ``before``."""
    if math.isnan(before):
        return
    cut = expiry_cut(before) if math.isfinite(before) else before
    for table, _ in LEVELS:
        db.execute(f"DELETE FROM {table} WHERE bucket < ?", (cut,))  # noqa: S608


def prune(db: sqlite3.Connection, before: float) -> None:
    """Drop the buckets of readings just deleted below ``before``; recompute the one it cuts."""
    if not math.isfinite(before):
        if before > 0:
            for table, _ in LEVELS:
                db.execute(f"DELETE FROM {table}")  # noqa: S608
        return
    rolled = _watermark(db)
    for table, step in LEVELS:
        cut = floor_to(before, step)
        db.execute(f"DELETE FROM {table} WHERE bucket <= ?", (cut,))  # noqa: S608
        db.execute(rebuild_sql(table, step, "ts >= ? AND ts < ? AND ts < ?"), (cut, cut + step, rolled))
