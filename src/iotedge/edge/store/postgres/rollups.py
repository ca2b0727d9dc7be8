"""Per-minute and per-hour rollups on PostgreSQL: the same buckets as SQLite's (``store/rollups.py``).

A rollup row holds, for one (object, metric, owner, bucket), the count, sum, sum of squares,
min and max of the readings in ``[bucket, bucket + step)`` and the newest reading's time and
value. One statement stores a batch: it moves the session's ``incoming`` rows into
``readings`` (``ON CONFLICT DO NOTHING``), and counts exactly the rows that insert returned
into both levels and ``latest``, all in the caller's transaction. ``prune`` drops the buckets
below the cut and recomputes the one it cuts through, as SQLite does.

Window reads (``postgres/windows.py``) combine whole hours, whole minutes and the raw rows of
the partial minutes at the window's edges.
"""

from iotedge.edge.store.rollups import LEVELS

__all__ = ["LEVELS", "bucket_sql", "expire_sql", "ingest_sql", "prune_sql", "rebuild_sql", "table_ddl"]


def table_ddl(table: str) -> str:
    """CREATE TABLE of one rollup level (key first, as the readings' key: object, metric).

    Every batch rewrites its buckets' rows; half-empty pages keep those updates HOT (no new
    index entry), which doubles the ingest rate.
    """
    return f"""CREATE TABLE {table} (
  object_id TEXT COLLATE "C" NOT NULL,
  metric TEXT COLLATE "C" NOT NULL,
  client TEXT COLLATE "C" NOT NULL,
  bucket BIGINT NOT NULL,
  n BIGINT NOT NULL,
  total DOUBLE PRECISION NOT NULL,
  low DOUBLE PRECISION NOT NULL,
  high DOUBLE PRECISION NOT NULL,
  squares DOUBLE PRECISION NOT NULL,
  last_ts DOUBLE PRECISION NOT NULL,
  last_value DOUBLE PRECISION NOT NULL,
  PRIMARY KEY (object_id, metric, client, bucket)
) WITH (fillfactor = 50)"""


def bucket_sql(column: str, step: int) -> str:
    """The bucket start of ``column``, corrected by one step as ``rollups.floor_to`` is.

    ``floor(ts / step) * step`` is an integer-valued double (exact below 2**53), so the two
    comparisons are exact and ``bucket <= ts < bucket + step`` always holds.
    """
    start = f"(floor({column} / {step}) * {step})"
    return (
        f"({start} - CASE WHEN {start} > {column} THEN {step} ELSE 0 END "
        f"+ CASE WHEN {start} + {step} <= {column} THEN {step} ELSE 0 END)::bigint"
    )


_COLUMNS = "object_id, metric, client, bucket, n, total, low, high, squares, last_ts, last_value"


def _aggregate(source: str, step: int, condition: str = "TRUE") -> str:
    """SELECT of ``step``-wide buckets of the rows of ``source`` matching ``condition``, in key order.

    Key order makes two writers that touch the same buckets lock them in the same order.
    Within one bucket, readings have distinct times (the readings' key), so the newest is one row.
    """
    return (
        f"SELECT object_id, metric, client, {bucket_sql('ts', step)} AS bucket, COUNT(*), SUM(value), "  # noqa: S608
        "MIN(value), MAX(value), SUM(value * value), MAX(ts), (array_agg(value ORDER BY ts DESC))[1] "
        f"FROM {source} WHERE {condition} GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"
    )


def _singles(source: str, step: int) -> str:
    """The same SELECT when no two rows of ``source`` share an (object, metric): a bucket per row."""
    return (
        f"SELECT object_id, metric, client, {bucket_sql('ts', step)}, 1, value, value, value, "  # noqa: S608
        f"value * value, ts, value FROM {source} ORDER BY 1, 2, 3, 4"
    )


def _merge(table: str) -> str:
    """ON CONFLICT clause adding a batch's bucket to the stored one (SET reads the old row)."""
    return (
        f"ON CONFLICT (object_id, metric, client, bucket) DO UPDATE SET n = {table}.n + excluded.n, "
        f"total = {table}.total + excluded.total, low = LEAST({table}.low, excluded.low), "
        f"high = GREATEST({table}.high, excluded.high), squares = {table}.squares + excluded.squares, "
        f"last_value = CASE WHEN excluded.last_ts >= {table}.last_ts THEN excluded.last_value "
        f"ELSE {table}.last_value END, last_ts = GREATEST({table}.last_ts, excluded.last_ts)"
    )


def rebuild_sql(table: str, step: int, condition: str = "TRUE") -> str:
    """INSERT of ``table``'s buckets computed from the readings matching ``condition``."""
    return f"INSERT INTO {table} ({_COLUMNS}) {_aggregate('readings', step, condition)}"


def ingest_sql(latest: str, *, unique: bool) -> str:
    """One statement storing the session's ``incoming`` batch; it returns how many readings were new.

    ``unique``: the batch has one reading per (object, metric), the usual poll, so each
    reading is its own bucket's increment and nothing needs grouping.

    Rows go into ``readings`` in key order (then batch order, so the first of two readings
    with the same key wins, as SQLite's ``INSERT OR IGNORE`` row by row), so two writers
    whose batches share keys take the row locks in the same order. Only the rows the insert
    returned reach the rollups. ``latest`` is the INSERT maintaining the latest values.
    """
    levels = ", ".join(
        f"{table} AS (INSERT INTO {table} ({_COLUMNS}) "
        f"{_singles('fresh', step) if unique else _aggregate('fresh', step)} {_merge(table)})"
        for table, step in LEVELS
    )
    return (
        "WITH fresh AS (INSERT INTO readings (object_id, metric, ts, value, client) "  # noqa: S608
        "SELECT object_id, metric, ts, value, client FROM incoming ORDER BY object_id, metric, ts, n "
        "ON CONFLICT DO NOTHING RETURNING object_id, metric, ts, value, client), "
        f"{levels}, latest_rows AS ({latest}) SELECT COUNT(*) FROM fresh"
    )


def expire_sql(table: str) -> str:
    """The statement dropping one level's buckets older than ``%(cut)s`` (see ``rollups.expiry_cut``)."""
    return f"DELETE FROM {table} WHERE bucket < %(cut)s"  # noqa: S608


def prune_sql(table: str, step: int) -> tuple[str, str]:
    """(delete, rebuild) statements of one level after readings below ``%(before)s`` are deleted.

    Both take the parameter ``cut``: the start of the bucket ``before`` falls into.
    """
    return (
        f"DELETE FROM {table} WHERE bucket <= %(cut)s",  # noqa: S608
        rebuild_sql(table, step, "ts >= %(cut)s AND ts < %(cut)s + " + str(step)),
    )
