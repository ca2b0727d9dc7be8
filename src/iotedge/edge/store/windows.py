"""Window statistics in SQL: from the rollups (what the store serves) and from raw rows (the reference).

Both scope a window the same way: one object's readings recorded under its current owner
(``readings.client`` = ``objects.client``), and the rollups carry that client in their key,
so a device moved to another client brings none of its past with it on either path. The
raw functions are the computation of earlier releases, kept for the equivalence tests and
the benchmark's before/after.
"""

import functools
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from iotedge.edge.store.rollups import HOUR, MINUTE, Piece, floor_to, rolled_upto, split
from iotedge.edge.store.summaries import EMPTY, Summary, from_moments

__all__ = [
    "Moments",
    "Query",
    "bucket_rows",
    "bucket_rows_raw",
    "client_moments",
    "client_moments_raw",
    "combine",
    "grid_pieces",
    "object_summaries",
    "owned_moments",
    "rolled_last",
    "summary",
    "summary_raw",
]

Query = Callable[[str, Iterable[Any]], list[tuple[Any, ...]]]
"""Runs one read-only statement (``SqliteDatabase.query``)."""

Moments = tuple[int, float, float | None, float | None, float]
"""COUNT, SUM, MIN, MAX and SUM of squares of some readings."""

_OWNER_OF = "(SELECT client FROM objects WHERE id = ?)"
_OWNED = "JOIN objects o ON o.id = r.object_id AND o.client = r.client"
_RAW_MOMENTS = "COUNT(r.value), TOTAL(r.value), MIN(r.value), MAX(r.value), TOTAL(r.value*r.value), MAX(r.ts)"
_ROLLUP_MOMENTS = "SUM(r.n), TOTAL(r.total), MIN(r.low), MAX(r.high), TOTAL(r.squares), MAX(r.last_ts)"


def _table_and_moments(piece: Piece) -> tuple[str, str]:
    """The table a piece is read from and its moments' SQL."""
    return ("readings", _RAW_MOMENTS) if piece.source == "raw" else (piece.source, _ROLLUP_MOMENTS)


def _pooled_by_pair(rows: Iterable[tuple[Any, ...]]) -> dict[tuple[str, str], Moments]:
    """(object, metric) -> its pieces' rows pooled in the order they came; empty pairs left out."""
    parts: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
    for object_id, metric, *row in rows:
        parts.setdefault((object_id, metric), []).append(tuple(row))
    out: dict[tuple[str, str], Moments] = {}
    for key, own in parts.items():
        pooled, _ = combine(own)
        if pooled[0]:
            out[key] = pooled
    return out


def _range(piece: Piece) -> str:
    column = "r.ts" if piece.source == "raw" else "r.bucket"
    return f"{column}>=? AND {column}<?"


def combine(parts: Iterable[tuple[Any, ...]]) -> tuple[Moments, float | None]:
    """Pool (count, sum, min, max, squares, newest ts) rows of disjoint parts of one window."""
    count, total, squares = 0, 0.0, 0.0
    low: float | None = None
    high: float | None = None
    newest: float | None = None
    for n, part_total, part_low, part_high, part_squares, part_newest in parts:
        if not n:
            continue
        count += int(n)
        total += part_total
        squares += part_squares
        low = part_low if low is None else min(low, part_low)
        high = part_high if high is None else max(high, part_high)
        newest = part_newest if newest is None else max(newest, part_newest)
    return (count, total, low, high, squares), newest


def summary(query: Query, object_id: str, metric: str, since: float, until: float) -> Summary:
    """Statistics of one object's metric over [since, until), from raw edges and rollups."""
    selects: list[str] = []
    params: list[Any] = []
    for piece in split(since, until, rolled_upto(query)):
        table, moments = _table_and_moments(piece)
        selects.append(
            f"SELECT {moments} FROM {table} r WHERE r.object_id=? AND r.metric=? "  # noqa: S608
            f"AND r.client={_OWNER_OF} AND {_range(piece)}"
        )
        params += [object_id, metric, object_id, piece.lo, piece.hi]
    (count, total, low, high, squares), newest = combine(query(" UNION ALL ".join(selects), params))
    if not count or newest is None:
        return from_moments(0, 0.0, None, None, 0.0, None)
    # (object, metric, ts) is the readings' key, and the newest ts came from an owned row.
    rows = query(
        "SELECT value FROM readings WHERE object_id=? AND metric=? AND ts=?", (object_id, metric, newest)
    )
    value = rows[0][0] if rows else rolled_last(query, object_id, metric, newest)
    return from_moments(count, total, low, high, squares, (newest, value))


def rolled_last(query: Query, object_id: str, metric: str, newest: float) -> float | None:
    """The value at ``newest`` kept by the minute rollup, when its raw row is pruned already."""
    rows = query(
        "SELECT last_value FROM rollup_minute WHERE object_id=? AND metric=? AND bucket=? AND last_ts=?",
        (object_id, metric, floor_to(newest, MINUTE), newest),
    )
    return rows[0][0] if rows else None


_PAIRS_PER_STATEMENT = 90  # x at most 5 pieces: under SQLite's 500 terms of one compound SELECT


@functools.lru_cache(maxsize=64)
def _pair_sql(sources: tuple[str, ...], pairs: int) -> str:
    """The statement of :func:`_pair_parts` for ``pairs`` pairs over pieces of ``sources``."""
    selects: list[str] = []
    for n in range(pairs):
        for p, source in enumerate(sources):
            table, moments, column = (
                ("readings", _RAW_MOMENTS, "r.ts")
                if source == "raw"
                else (source, _ROLLUP_MOMENTS, "r.bucket")
            )
            selects.append(
                f"SELECT {n * len(sources) + p}, ? AS object_id, ? AS metric, {moments} "  # noqa: S608
                f"FROM {table} r WHERE r.object_id=? AND r.metric=? AND r.client=? "
                f"AND {column}>=? AND {column}<?"
            )
    return (
        f"WITH p (k, object_id, metric, n, total, low, high, squares, newest) AS "  # noqa: S608
        f"({' UNION ALL '.join(selects)}) SELECT p.k, p.n, p.total, p.low, p.high, p.squares, "
        "p.newest, (SELECT x.value FROM readings x WHERE x.object_id=p.object_id "
        "AND x.metric=p.metric AND x.ts=p.newest) FROM p"
    )


def _pair_parts(
    query: Query, pairs: Sequence[tuple[str, str]], client: str, since: float, until: float
) -> list[list[tuple[Any, ...]]]:
    """Per (object, metric) pair owned by ``client``: its pieces' rows, in time order.

    Each row is (count, sum, min, max, squares, newest ts, value at the newest ts): the same
    per-piece aggregates as :func:`summary`, one aggregate per pair and piece, looked up
    together in one statement per 90 pairs.
    """
    pieces = split(since, until, rolled_upto(query))
    sources = tuple(piece.source for piece in pieces)
    out: list[list[tuple[Any, ...]]] = []
    for first in range(0, len(pairs), _PAIRS_PER_STATEMENT):
        chunk = pairs[first : first + _PAIRS_PER_STATEMENT]
        params: list[Any] = []
        for object_id, metric in chunk:
            for piece in pieces:
                params += (object_id, metric, object_id, metric, client, piece.lo, piece.hi)
        rows = sorted(query(_pair_sql(sources, len(chunk)), params))
        out += [[row[1:] for row in rows[n * len(pieces) : (n + 1) * len(pieces)]] for n in range(len(chunk))]
    return out


def object_summaries(
    query: Query, object_id: str, client: str, metrics: Sequence[str], since: float, until: float
) -> dict[str, Summary]:
    """:func:`summary` of each of ``metrics`` of one object owned by ``client``, in one statement.

    The same pieces, the same per-piece aggregates and the same pooling in the same order as
    :func:`summary`, so the results are equal to the last bit; each piece also looks up the
    value of its newest reading (a key lookup), instead of one more statement per metric.
    """
    parts = _pair_parts(query, [(object_id, m) for m in metrics], client, since, until)
    out: dict[str, Summary] = {}
    for metric, own in zip(metrics, parts, strict=True):
        (count, total, low, high, squares), newest = combine(row[:6] for row in own)
        if not count or newest is None:
            out[metric] = EMPTY
            continue
        value = next((row[6] for row in own if row[5] == newest), None)
        if value is None:
            value = rolled_last(query, object_id, metric, newest)
        out[metric] = from_moments(count, total, low, high, squares, (newest, value))
    return out


def owned_moments(query: Query, client: str, since: float, until: float) -> dict[tuple[str, str], Moments]:
    """:func:`client_moments` computed as it does, row for row, without its GROUP BY sorter.

    The pairs come from ``latest`` in its key order (the client's object ids are an IN list,
    which SQLite walks sorted), so each group's rows arrive together and in the same index
    order as in :func:`client_moments`: the same sums to the last bit, without sorting every
    bucket row first.
    """
    selects: list[str] = []
    params: list[Any] = []
    for piece in split(since, until, rolled_upto(query)):
        table, moments = _table_and_moments(piece)
        selects.append(
            f"SELECT l.object_id, l.metric, {moments} FROM latest l CROSS JOIN {table} r "  # noqa: S608
            "WHERE l.object_id IN (SELECT id FROM objects WHERE client=?) AND r.object_id=l.object_id "
            f"AND r.metric=l.metric AND r.client=? AND {_range(piece)} GROUP BY l.object_id, l.metric"
        )
        params += [client, client, piece.lo, piece.hi]
    return _pooled_by_pair(query(" UNION ALL ".join(selects), params))


def summary_raw(query: Query, object_id: str, metric: str, since: float, until: float) -> Summary:
    """The same statistics from every raw row of the window (the reference)."""
    window = (
        f"FROM readings r WHERE r.object_id=? AND r.metric=? AND r.ts>=? AND r.ts<? AND r.client={_OWNER_OF}"
    )
    params = (object_id, metric, since, until, object_id)
    moments = f"COUNT(r.value), TOTAL(r.value), MIN(r.value), MAX(r.value), TOTAL(r.value*r.value) {window}"
    count, total, low, high, squares = query(f"SELECT {moments}", params)[0]
    last = query(f"SELECT r.ts, r.value {window} ORDER BY r.ts DESC LIMIT 1", params)
    return from_moments(count, total, low, high, squares, last[0] if last else None)


def client_moments(query: Query, client: str, since: float, until: float) -> dict[tuple[str, str], Moments]:
    """(object, metric) -> moments over [since, until) of the client's objects, from rollups."""
    selects: list[str] = []
    params: list[Any] = []
    for piece in split(since, until, rolled_upto(query)):
        table, moments = _table_and_moments(piece)
        # Driven by the (object, metric) pairs in ``latest`` so that every part is a range
        # of its table's key, not a scan of each object's whole history.
        selects.append(
            f"SELECT l.object_id, l.metric, {moments} FROM objects o CROSS JOIN latest l "  # noqa: S608
            f"CROSS JOIN {table} r WHERE o.client=? AND l.object_id=o.id AND r.object_id=l.object_id "
            f"AND r.metric=l.metric AND r.client=o.client AND {_range(piece)} GROUP BY l.object_id, l.metric"
        )
        params += [client, piece.lo, piece.hi]
    return _pooled_by_pair(query(" UNION ALL ".join(selects), params))


def client_moments_raw(
    query: Query, client: str, since: float, until: float
) -> dict[tuple[str, str], Moments]:
    """The same from every raw row (the reference)."""
    rows = query(
        "SELECT r.object_id, r.metric, COUNT(r.value), TOTAL(r.value), MIN(r.value), "  # noqa: S608
        f"MAX(r.value), TOTAL(r.value*r.value) FROM readings r {_OWNED} "
        "WHERE o.client=? AND r.ts>=? AND r.ts<? GROUP BY r.object_id, r.metric",
        (client, since, until),
    )
    return {
        (object_id, metric): (int(n), total, low, high, sq)
        for object_id, metric, n, total, low, high, sq in rows
    }


def grid_pieces(
    since: float, until: float, step: float, start: float, rolled: float = math.inf
) -> list[Piece]:
    """The pieces of [since, until) whose buckets never straddle a step of the grid.

    ``rolled`` is the watermark, as for :func:`~iotedge.edge.store.rollups.split`.
    """
    if step % MINUTE or start % MINUTE:
        return [Piece("raw", since, until)]
    hours = not (step % HOUR or start % HOUR)
    return [
        p if hours or p.source != "rollup_hour" else Piece("rollup_minute", p.lo, p.hi)
        for p in split(since, until, rolled)
    ]


def bucket_rows(
    query: Query,
    object_ids: Sequence[str],
    metric: str,
    since: float,
    until: float,
    step: float,
    start: float,
) -> list[tuple[Any, ...]]:
    """(bucket number, sum, min, max, count) rows of ``object_ids`` on the grid ``start + k * step``.

    A grid of whole minutes (Grafana's steps of a minute or more) reads the rollups between
    the raw edges; any other grid reads raw rows. A bucket number may come in several rows.
    """
    marks = ",".join("?" * len(object_ids))
    selects: list[str] = []
    params: list[Any] = []
    for piece in grid_pieces(since, until, step, start, rolled_upto(query)):
        if piece.source == "raw":
            columns = (
                "CAST((r.ts - ?) / ? AS INTEGER), TOTAL(r.value), MIN(r.value), MAX(r.value), COUNT(r.value)"
            )
            table = "readings"
        else:
            columns = "CAST((r.bucket - ?) / ? AS INTEGER), TOTAL(r.total), MIN(r.low), MAX(r.high), SUM(r.n)"
            table = piece.source
        selects.append(
            f"SELECT {columns} FROM {table} r {_OWNED} WHERE r.object_id IN ({marks}) "  # noqa: S608
            f"AND r.metric=? AND {_range(piece)} GROUP BY 1"
        )
        params += [start, step, *object_ids, metric, piece.lo, piece.hi]
    return query(" UNION ALL ".join(selects), params)


def bucket_rows_raw(
    query: Query,
    object_ids: Sequence[str],
    metric: str,
    since: float,
    until: float,
    step: float,
    start: float,
) -> list[tuple[Any, ...]]:
    """The same rows from every raw reading (the reference)."""
    return query(
        "SELECT CAST((r.ts - ?) / ? AS INTEGER) AS b, TOTAL(r.value), MIN(r.value), "  # noqa: S608
        f"MAX(r.value), COUNT(r.value) FROM readings r {_OWNED} "
        f"WHERE r.object_id IN ({','.join('?' * len(object_ids))}) "
        "AND r.metric=? AND r.ts>=? AND r.ts<? GROUP BY b",
        (start, step, *object_ids, metric, since, until),
    )
