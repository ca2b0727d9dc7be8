"""The PostgreSQL store (issue 15): batch ingest against SQLite, and window statistics against history.

- ingest: readings/s of ``insert_readings`` in batches of 1,000 and 10,000 readings (500 or
  5,000 objects x 2 metrics) into PostgreSQL (binary COPY into a temporary table, then one
  statement that fills the readings, both rollup levels and the latest values; async
  psycopg, synchronous commit) and into SQLite (with its rollups), alternating round by
  round in the same run, medians of 3 rounds; and into PostgreSQL from two writers at once
  (two pool connections, each with its own half of the objects, as two collectors would);
- window sizes: 30 days of 5-second readings of one object (518,400 rows per metric, loaded
  by COPY and rolled up set-based) on both backends; ``summary`` over the last 1 h, 1 d, 7 d
  and 30 d, from the raw rows and from the rollups, median ms of interleaved rounds;
- windows: one object's history grows from 1 hour to 30 days of 5-second readings (two
  metrics); at each size, the median time of the last hour's and the last day's statistics
  (``summary``), the client's statistics over the last hour and a 720-point series of the
  whole history. Flat times for the fixed windows mean the index ``(object_id, metric, ts)``
  keeps window queries independent of the history stored.

PostgreSQL is the server at 127.0.0.1:5432 (``IOTEDGE_BENCH_PG`` for another admin URL); the
benchmark works in a database of its own and drops it. Run alone: ``python bench/pg_bench.py``.
"""

import asyncio
import math
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from iotedge.edge.normalise import CatalogueEntry, Reading
from iotedge.edge.store import SqliteStore, rollups as lite_rollups, windows as lite_windows
from iotedge.edge.store.aio import AsyncEdgeStore, AsyncSqliteStore
from iotedge.edge.store.postgres import (
    PostgresStore,
    open_pg_store,
    rollups as pg_rollups,
    windows as pg_windows,
)

__all__ = ["pg_md", "scenario_pg"]

ADMIN_URL = os.environ.get("IOTEDGE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
_STEP_S = 5.0
_HOUR = 3600.0
_DAY = 86_400.0
_HISTORIES = (("1 h", _HOUR), ("1 d", _DAY), ("7 d", 7 * _DAY), ("30 d", 30 * _DAY))
_T_END = 1.8e9
_FILL_CHUNK = 20_000


@contextmanager
def _database() -> Iterator[str]:
    name = f"iotedge_bench_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _batches(objects: int, count: int, first: int) -> list[list[Reading]]:
    rng = random.Random(first)
    return [
        [
            Reading(
                f"device_{i}",
                f"client_{i % 20}",
                metric,
                1.6e9 + objects * 1e4 + n * _STEP_S,
                round(rng.uniform(10, 90), 2),
            )
            for i in range(objects)
            for metric in ("temperature", "battery_level")
        ]
        for n in range(first, first + count)
    ]


async def _rate(store: AsyncEdgeStore, *shares: list[list[Reading]]) -> float:
    """Readings/s of storing the batches of every share, the shares' writers at once."""

    async def write(share: list[list[Reading]]) -> int:
        return sum([await store.insert_readings(batch) for batch in share])

    started = time.perf_counter()
    stored = sum(await asyncio.gather(*(write(share) for share in shares)))
    elapsed = time.perf_counter() - started
    expected = sum(len(b) for share in shares for b in share)
    if stored != expected:
        raise RuntimeError(f"stored {stored} of {expected} readings")
    return stored / elapsed


async def _ingest(url: str, tmp: Path, *, rounds: int, readings: int) -> list[dict[str, Any]]:
    rows = []
    for objects in (500, 5_000):
        per_batch = objects * 2
        count = max(1, readings // per_batch)
        rates: dict[str, list[float]] = {"postgresql": [], "postgresql_2": [], "sqlite": []}
        pg = await open_pg_store(url, max_size=2)
        lite = AsyncSqliteStore(SqliteStore(tmp / f"ingest-{objects}.sqlite3", check=False))
        try:
            for number in range(rounds):
                batches = _batches(objects, count, number * count)
                for name, store in (("postgresql", pg), ("sqlite", lite))[:: 1 if number % 2 else -1]:
                    rates[name].append(await _rate(store, batches))
                # Two collectors writing at once (the scale-out mode): each its own shard of twice
                # the objects, in batches of the same size, as many readings in all.
                fleet = _batches(2 * objects, max(1, count // 2), (rounds + number) * count)
                shards = [[batch[:per_batch] for batch in fleet], [batch[per_batch:] for batch in fleet]]
                rates["postgresql_2"].append(await _rate(pg, *shards))
        finally:
            await pg.close()
            await lite.close()
        rows.append(
            {
                "batch": per_batch,
                "readings_per_round": count * per_batch,
                "rounds": rounds,
                **{f"{name}_per_s": statistics.median(r) for name, r in rates.items()},
            }
        )
    return rows


def _history(since: float, until: float) -> Iterator[list[Reading]]:
    rng = random.Random(int(since))
    chunk: list[Reading] = []
    ts = since
    while ts < until:
        level = 50.0 + 10.0 * math.sin(ts / _HOUR)
        chunk.append(Reading("device_1", "client_1", "temperature", ts, round(level + rng.uniform(-1, 1), 2)))
        chunk.append(Reading("device_1", "client_1", "humidity", ts, round(rng.uniform(30, 70), 2)))
        ts += _STEP_S
        if len(chunk) >= _FILL_CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def _median_ms(call: Callable[[], Awaitable[object]], repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


async def _windows(url: str, *, repeats: int) -> list[dict[str, Any]]:
    rows = []
    store: PostgresStore = await open_pg_store(url, max_size=2)
    try:
        await store.upsert_objects(
            [CatalogueEntry(f"device_{i}", "client_1", "temperature_sensor") for i in range(1, 11)], _T_END
        )
        for i in range(2, 11):  # nine neighbours with an hour each: the client query has company
            await store.insert_readings(
                [
                    Reading(
                        f"device_{i}", "client_1", "temperature", _T_END - _HOUR + k * _STEP_S, float(k % 50)
                    )
                    for k in range(int(_HOUR / _STEP_S))
                ]
            )
        filled = _T_END
        for label, span in _HISTORIES:
            for chunk in _history(_T_END - span, filled):
                await store.insert_readings(chunk)
            filled = _T_END - span
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                await conn.execute("ANALYZE readings")  # as autovacuum would after such an ingest
            step = float(max(60, math.ceil(span / 720 / 60) * 60))
            calls: dict[str, Callable[[], Awaitable[object]]] = {
                "last_hour": lambda: store.summary("device_1", "temperature", _T_END - _HOUR, _T_END),
                "last_day": lambda: store.summary("device_1", "temperature", _T_END - _DAY, _T_END),
                "client_last_hour": lambda: store.client_summaries("client_1", _T_END - _HOUR, _T_END),
                "whole_history": partial(store.summary, "device_1", "temperature", _T_END - span, _T_END),
                "series_720": partial(
                    store.bucketed, ["device_1"], "temperature", _T_END - span, _T_END, step
                ),
            }
            row: dict[str, Any] = {"history": label, "readings": await store.count_readings()}
            for name, call in calls.items():
                row[f"{name}_p50_ms"] = await _median_ms(call, repeats)
            rows.append(row)
    finally:
        await store.close()
    return rows


_SIZES = (("1 h", _HOUR), ("1 d", _DAY), ("7 d", 7 * _DAY), ("30 d", 30 * _DAY))
_METRICS = ("temperature", "humidity")


def _series_rows(days: float) -> list[tuple[str, str, float, float, str]]:
    """(object_id, metric, ts, value, client) of device_1 every 5 s over ``days`` up to _T_END."""
    rng = random.Random(5)
    count = int(days * _DAY / _STEP_S)
    return [
        (
            "device_1",
            metric,
            ts,
            round(50.0 + 10.0 * math.sin(ts / _HOUR) + rng.uniform(-1, 1), 2),
            "client_1",
        )
        for k in range(count)
        for ts in (_T_END - (count - k) * _STEP_S,)
        for metric in _METRICS
    ]


async def _pg_load(url: str, rows: list[tuple[str, str, float, float, str]]) -> None:
    """COPY the rows into ``readings``, then the rollups and latest values set-based."""
    async with await psycopg.AsyncConnection.connect(url) as conn:
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO objects VALUES ('device_1', 'client_1', 'temperature_sensor', %s, %s)",
                (_T_END, _T_END),
            )
            copy_sql = "COPY readings (object_id, metric, ts, value, client) FROM STDIN (FORMAT BINARY)"
            async with conn.cursor().copy(copy_sql) as copy:
                copy.set_types(("text", "text", "float8", "float8", "text"))
                for row in rows:
                    await copy.write_row(row)
            for table, step in pg_rollups.LEVELS:
                await conn.execute(pg_rollups.rebuild_sql(table, step))
            await conn.execute(
                "INSERT INTO latest SELECT DISTINCT ON (object_id, metric) object_id, metric, ts, value, "
                "client FROM readings ORDER BY object_id, metric, ts DESC"
            )
        await conn.set_autocommit(True)
        await conn.execute("VACUUM ANALYZE")  # as autovacuum would after such a load


def _lite_load(store: SqliteStore, rows: list[tuple[str, str, float, float, str]]) -> None:
    store.upsert_objects([CatalogueEntry("device_1", "client_1", "temperature_sensor")], _T_END)
    with store.database.write() as db:
        db.executemany("INSERT INTO readings (object_id, metric, ts, value, client) VALUES (?,?,?,?,?)", rows)
        for table, step in lite_rollups.LEVELS:
            db.execute(lite_rollups.rebuild_sql(table, step))
        # Every stored reading is rolled up now: nothing waits for its minute to close.
        db.execute("UPDATE rollup_state SET rolled_upto = ?", (math.inf,))


async def _window_sizes(url: str, tmp: Path, *, days: float, repeats: int) -> dict[str, Any]:
    """Median ms of ``summary`` over growing windows, raw and from rollups, on both backends."""
    rows = _series_rows(days)
    pg = await open_pg_store(url, max_size=1)  # the schema first
    started = time.perf_counter()
    await _pg_load(url, rows)
    pg_load_s = time.perf_counter() - started
    lite = SqliteStore(tmp / "windows.sqlite3", check=False)
    _lite_load(lite, rows)
    out = []
    try:
        end = _T_END + 2.5  # "now" falls inside a minute, as it does live
        for label, span in _SIZES:
            if span > days * _DAY:
                continue
            since = end - span
            query = lite.database.query
            calls: dict[str, Callable[[], Awaitable[object]]] = {
                "pg_raw": partial(pg_windows.summary_raw, pg._query, "device_1", "temperature", since, end),
                "pg_rollup": partial(pg.summary, "device_1", "temperature", since, end),
                "sqlite_raw": partial(
                    _now, lite_windows.summary_raw, query, "device_1", "temperature", since, end
                ),
                "sqlite_rollup": partial(
                    _now, lite_windows.summary, query, "device_1", "temperature", since, end
                ),
            }
            answers = {name: await call() for name, call in calls.items()}
            counts = {getattr(answer, "count", None) for answer in answers.values()}
            if len(counts) != 1:
                raise RuntimeError(f"the four computations disagree over {label}: {answers}")
            times: dict[str, list[float]] = {name: [] for name in calls}
            for _ in range(repeats):  # interleaved, so machine noise falls on all alike
                for name, call in calls.items():
                    begun = time.perf_counter()
                    await call()
                    times[name].append((time.perf_counter() - begun) * 1000)
            out.append(
                {"window": label, "readings": counts.pop()}
                | {f"{name}_p50_ms": statistics.median(samples) for name, samples in times.items()}
            )
    finally:
        await pg.close()
        lite.close()
    return {"rows": out, "history_rows": len(rows), "days": days, "pg_load_s": pg_load_s, "repeats": repeats}


async def _now(func: Callable[..., object], *args: object) -> object:
    """A synchronous call as a coroutine (SQLite answers from the event loop)."""
    return func(*args)


def scenario_pg(*, quick: bool = False) -> dict[str, Any]:
    """Run the three parts in databases of their own; a few minutes (quick: well under one)."""
    with _database() as url, tempfile.TemporaryDirectory(prefix="iotedge-pg-bench-") as tmp:
        ingest = asyncio.run(_ingest(url, Path(tmp), rounds=3, readings=20_000 if quick else 100_000))
    with _database() as url, tempfile.TemporaryDirectory(prefix="iotedge-pg-bench-") as tmp:
        sizes = asyncio.run(_window_sizes(url, Path(tmp), days=1 if quick else 30, repeats=3 if quick else 9))
    with _database() as url:
        windows = asyncio.run(_windows(url, repeats=5 if quick else 15))
    return {"ingest": ingest, "window_sizes": sizes, "windows": windows}


def pg_md(data: dict[str, Any]) -> list[str]:
    """The results as Markdown tables."""
    out = [
        "## PostgreSQL store: ingest against SQLite",
        "",
        "| batch | readings per round | PostgreSQL readings/s | PostgreSQL, 2 writers | SQLite readings/s |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in data["ingest"]:
        rates = f"{r['postgresql_per_s']:,.0f} | {r['postgresql_2_per_s']:,.0f} | {r['sqlite_per_s']:,.0f}"
        out.append(f"| {r['batch']:,} | {r['readings_per_round']:,} | {rates} |")
    sizes = data.get("window_sizes")
    if sizes:
        out += [
            "",
            "## PostgreSQL store: window statistics by window size, raw rows against rollups (median ms)",
            "",
            f"One object holds {sizes['history_rows']:,} readings ({sizes['days']:g} days of 5 s, "
            "two metrics; COPY and "
            f"set-based rollups took {sizes['pg_load_s']:.1f} s on PostgreSQL). `summary` of one metric "
            f"over the last window, {sizes['repeats']} interleaved rounds.",
            "",
            "| window | readings | PostgreSQL raw | PostgreSQL rollups | SQLite raw | SQLite rollups |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for r in sizes["rows"]:
            out.append(
                f"| {r['window']} | {r['readings']:,} | {r['pg_raw_p50_ms']:.2f} "
                f"| {r['pg_rollup_p50_ms']:.2f} | {r['sqlite_raw_p50_ms']:.2f} "
                f"| {r['sqlite_rollup_p50_ms']:.2f} |"
            )
    out += [
        "",
        "## PostgreSQL store: window statistics against stored history (median ms)",
        "",
        "| history | readings | last hour | last day | client, last hour | whole history "
        "| 720-point series |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in data["windows"]:
        fixed = (
            f"{r['last_hour_p50_ms']:.2f} | {r['last_day_p50_ms']:.2f} | {r['client_last_hour_p50_ms']:.2f}"
        )
        growing = f"{r['whole_history_p50_ms']:.1f} | {r['series_720_p50_ms']:.1f}"
        out.append(f"| {r['history']} | {r['readings']:,} | {fixed} | {growing} |")
    return [*out, ""]


if __name__ == "__main__":
    started = time.perf_counter()
    result = scenario_pg(quick="--quick" in sys.argv[1:])
    print("\n".join(pg_md(result)))
    print(f"({time.perf_counter() - started:.0f} s)")
