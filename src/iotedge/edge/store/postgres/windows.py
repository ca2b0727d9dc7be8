"""Window statistics on PostgreSQL: from the rollups (what the store serves) and from raw rows.

The same pieces as SQLite's ``store/windows.py`` (raw rows of the partial minutes at the
edges, whole minutes, whole hours), each a range of its table's key, in one statement per
call. The raw functions compute from every row of the window: the reference of the tests
and the benchmark's "before".
"""

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from iotedge.edge.store.rollups import MINUTE, Piece, floor_to, split
from iotedge.edge.store.summaries import EMPTY, Summary, from_moments
from iotedge.edge.store.windows import Moments, combine, grid_pieces

__all__ = [
    "AsyncQuery",
    "bucket_rows",
    "bucket_rows_raw",
    "client_moments",
    "client_moments_raw",
    "object_summaries",
    "rolled_last",
    "summary",
    "summary_raw",
]

AsyncQuery = Callable[[str, Sequence[Any]], Awaitable[list[tuple[Any, ...]]]]
"""Runs one read-only statement (``PostgresStore._query``)."""

_OWNER_OF = "(SELECT client FROM objects WHERE id = %s)"
_OWNED = "JOIN objects o ON o.id = r.object_id AND o.client = r.client"
_RAW = (
    "COUNT(r.value), COALESCE(SUM(r.value), 0), MIN(r.value), MAX(r.value), "
    "COALESCE(SUM(r.value * r.value), 0)"
)
_ROLLED = (
    "COALESCE(SUM(r.n), 0), COALESCE(SUM(r.total), 0), MIN(r.low), MAX(r.high), COALESCE(SUM(r.squares), 0)"
)


def _source(piece: Piece) -> tuple[str, str, str, str]:
    """(table, moments, newest time, range condition) of one piece."""
    if piece.source == "raw":
        return "readings", _RAW, "MAX(r.ts)", "r.ts >= %s AND r.ts < %s"
    return piece.source, _ROLLED, "MAX(r.last_ts)", "r.bucket >= %s AND r.bucket < %s"


async def summary(query: AsyncQuery, object_id: str, metric: str, since: float, until: float) -> Summary:
    """Statistics of one object's metric over [since, until), from raw edges and rollups."""
    selects: list[str] = []
    params: list[Any] = []
    for piece in split(since, until):
        table, moments, newest_ts, condition = _source(piece)
        selects.append(
            f"SELECT {moments}, {newest_ts} FROM {table} r WHERE r.object_id = %s AND r.metric = %s "  # noqa: S608
            f"AND r.client = {_OWNER_OF} AND {condition}"
        )
        params += [object_id, metric, object_id, piece.lo, piece.hi]
    # One round trip: the pieces, and the value of the newest reading among them.
    rows = await query(
        f"WITH parts (n, total, low, high, squares, newest) AS ({' UNION ALL '.join(selects)}) "  # noqa: S608
        "SELECT p.*, (SELECT r.value FROM readings r WHERE r.object_id = %s AND r.metric = %s "
        "AND r.ts = (SELECT MAX(newest) FROM parts)) FROM parts p",
        [*params, object_id, metric],
    )
    (count, total, low, high, squares), newest = combine(row[:6] for row in rows)
    if not count or newest is None:
        return from_moments(0, 0.0, None, None, 0.0, None)
    value = rows[0][6]
    if value is None:
        value = await rolled_last(query, object_id, metric, newest)
    return from_moments(count, total, low, high, squares, (newest, value))


async def rolled_last(query: AsyncQuery, object_id: str, metric: str, newest: float) -> float | None:
    """The value at ``newest`` kept by the minute rollup, when its raw row is pruned already."""
    rows = await query(
        "SELECT last_value FROM rollup_minute WHERE object_id = %s AND metric = %s AND bucket = %s "
        "AND last_ts = %s",
        (object_id, metric, floor_to(newest, MINUTE), newest),
    )
    return rows[0][0] if rows else None


async def object_summaries(
    query: AsyncQuery, object_id: str, client: str, metrics: Sequence[str], since: float, until: float
) -> dict[str, Summary]:
    """:func:`summary` of each of ``metrics`` of one object owned by ``client``, in one statement.

    The same per-piece aggregates pooled in the same order as :func:`summary`; each piece
    also looks up the value of its newest reading.
    """
    pieces = split(since, until)
    selects: list[str] = []
    params: list[Any] = []
    for m, metric in enumerate(metrics):
        for p, piece in enumerate(pieces):
            table, moments, newest_ts, condition = _source(piece)
            selects.append(
                f"SELECT {m * len(pieces) + p}, %s::text, {moments}, {newest_ts} FROM {table} r "  # noqa: S608
                f"WHERE r.object_id = %s AND r.metric = %s AND r.client = %s AND {condition}"
            )
            params += [metric, object_id, metric, client, piece.lo, piece.hi]
    rows = sorted(
        await query(
            f"WITH p (k, metric, n, total, low, high, squares, newest) AS ({' UNION ALL '.join(selects)}) "  # noqa: S608
            "SELECT p.*, (SELECT x.value FROM readings x WHERE x.object_id = %s AND x.metric = p.metric "
            "AND x.ts = p.newest) FROM p",
            [*params, object_id],
        )
    )
    out: dict[str, Summary] = {}
    for m, metric in enumerate(metrics):
        own = rows[m * len(pieces) : (m + 1) * len(pieces)]
        (count, total, low, high, squares), newest = combine(row[2:8] for row in own)
        if not count or newest is None:
            out[metric] = EMPTY
            continue
        value = next((row[8] for row in own if row[7] == newest), None)
        if value is None:
            value = await rolled_last(query, object_id, metric, newest)
        out[metric] = from_moments(count, total, low, high, squares, (newest, value))
    return out


async def summary_raw(query: AsyncQuery, object_id: str, metric: str, since: float, until: float) -> Summary:
    """The same statistics from every raw row of the window (the reference)."""
    window = (
        "FROM readings r WHERE r.object_id = %s AND r.metric = %s AND r.ts >= %s AND r.ts < %s "
        f"AND r.client = {_OWNER_OF}"
    )
    params = [object_id, metric, since, until, object_id]
    rows = await query(
        f"SELECT {_RAW}, (SELECT ARRAY[r.ts, r.value] {window} ORDER BY r.ts DESC LIMIT 1) {window}",
        params + params,
    )
    count, total, low, high, squares, last = rows[0]
    return from_moments(int(count), total, low, high, squares, (last[0], last[1]) if last else None)


async def client_moments(
    query: AsyncQuery, client: str, since: float, until: float
) -> dict[tuple[str, str], Moments]:
    """(object, metric) -> moments over [since, until) of the client's objects, from rollups."""
    selects: list[str] = []
    params: list[Any] = []
    for piece in split(since, until):
        table, moments, _, condition = _source(piece)
        # Driven by the (object, metric) pairs in ``latest``: each part is a range of its
        # table's key, not a scan of each object's whole history.
        selects.append(
            f"SELECT l.object_id, l.metric, {moments} FROM objects o "  # noqa: S608
            f"JOIN latest l ON l.object_id = o.id JOIN {table} r ON r.object_id = l.object_id "
            f"AND r.metric = l.metric AND r.client = o.client WHERE o.client = %s AND {condition} "
            "GROUP BY l.object_id, l.metric"
        )
        params += [client, piece.lo, piece.hi]
    rows = await query(
        "SELECT object_id, metric, SUM(n), SUM(total), MIN(low), MAX(high), SUM(squares) "  # noqa: S608
        f"FROM ({' UNION ALL '.join(selects)}) AS parts (object_id, metric, n, total, low, high, squares) "
        "GROUP BY object_id, metric",
        params,
    )
    return {
        (object_id, metric): (int(n), total, low, high, squares)
        for object_id, metric, n, total, low, high, squares in rows
        if n
    }


async def client_moments_raw(
    query: AsyncQuery, client: str, since: float, until: float
) -> dict[tuple[str, str], Moments]:
    """The same from every raw row (the reference)."""
    rows = await query(
        f"SELECT r.object_id, r.metric, {_RAW} FROM readings r {_OWNED} "  # noqa: S608
        "WHERE o.client = %s AND r.ts >= %s AND r.ts < %s GROUP BY r.object_id, r.metric",
        (client, since, until),
    )
    return {
        (object_id, metric): (int(n), total, low, high, squares)
        for object_id, metric, n, total, low, high, squares in rows
    }


async def bucket_rows(
    query: AsyncQuery,
    object_ids: Sequence[str],
    metric: str,
    since: float,
    until: float,
    step: float,
    start: float,
) -> list[tuple[Any, ...]]:
    """(bucket number, sum, min, max, count) rows of ``object_ids`` on the grid ``start + k * step``.

    A grid of whole minutes reads the rollups between the raw edges, any other grid the raw
    rows. Bucket numbers truncate toward zero, as SQLite's ``CAST(... AS INTEGER)`` does.
    """
    selects: list[str] = []
    params: list[Any] = []
    for piece in grid_pieces(since, until, step, start):
        if piece.source == "raw":
            columns = (
                "trunc((r.ts - %s) / %s)::bigint, SUM(r.value), MIN(r.value), MAX(r.value), COUNT(r.value)"
            )
            table, condition = "readings", "r.ts >= %s AND r.ts < %s"
        else:
            columns = "trunc((r.bucket - %s) / %s)::bigint, SUM(r.total), MIN(r.low), MAX(r.high), SUM(r.n)"
            table, condition = piece.source, "r.bucket >= %s AND r.bucket < %s"
        selects.append(
            f"SELECT {columns} FROM {table} r {_OWNED} WHERE r.object_id = ANY(%s) "  # noqa: S608
            f"AND r.metric = %s AND {condition} GROUP BY 1"
        )
        params += [start, step, list(object_ids), metric, piece.lo, piece.hi]
    return await query(
        "SELECT b, SUM(total), MIN(low), MAX(high), SUM(n) "  # noqa: S608
        f"FROM ({' UNION ALL '.join(selects)}) AS parts (b, total, low, high, n) GROUP BY b ORDER BY b",
        params,
    )


async def bucket_rows_raw(
    query: AsyncQuery,
    object_ids: Sequence[str],
    metric: str,
    since: float,
    until: float,
    step: float,
    start: float,
) -> list[tuple[Any, ...]]:
    """The same rows from every raw reading (the reference)."""
    return await query(
        "SELECT trunc((r.ts - %s) / %s)::bigint AS b, SUM(r.value), MIN(r.value), MAX(r.value), "  # noqa: S608
        f"COUNT(r.value) FROM readings r {_OWNED} WHERE r.object_id = ANY(%s) AND r.metric = %s "
        "AND r.ts >= %s AND r.ts < %s GROUP BY b ORDER BY b",
        (start, step, list(object_ids), metric, since, until),
    )
