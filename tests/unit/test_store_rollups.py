"""Rollups: window statistics from them equal the raw computation, through duplicates, moves and pruning."""

import itertools
import math
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from iotedge.edge.normalise import CatalogueEntry, Reading
from iotedge.edge.store import Store, windows
from iotedge.edge.store.rollups import (
    HOUR,
    LEVELS,
    MINUTE,
    ceil_to,
    floor_to,
    rebuild_sql,
    rolled_upto,
    split,
)
from iotedge.edge.store.summaries import Summary

T0 = 1_795_953_600.0  # on an hour boundary
SPAN = 3 * HOUR + 600  # readings over three hours and a bit, so windows cross hour edges
GRID = 4  # timestamps on a quarter-second grid: many land exactly on bucket edges
OBJECTS = ("device_1", "device_2")
METRICS = ("temperature", "humidity")

_ts = st.integers(min_value=0, max_value=SPAN * GRID).map(lambda i: T0 + i / GRID)
_value = st.integers(min_value=-100_000, max_value=100_000).map(lambda i: i / 100)
_reading = st.tuples(st.sampled_from(OBJECTS), st.sampled_from(METRICS), _ts, _value)
# A batch of readings and the owner of device_2 while it arrives (it moves between clients).
_batch = st.tuples(st.lists(_reading, max_size=60), st.sampled_from(("client_1", "client_2")))
_edge = st.integers(min_value=-600 * GRID, max_value=(SPAN + 600) * GRID).map(lambda i: T0 + i / GRID)


def _owner(object_id: str, device_2_owner: str) -> str:
    return device_2_owner if object_id == "device_2" else "client_1"


def _fill(store: Store, batches: list[tuple[list[tuple[str, str, float, float]], str]]) -> None:
    for readings, device_2_owner in batches:
        store.upsert_objects(
            [CatalogueEntry(o, _owner(o, device_2_owner), "temperature_sensor") for o in OBJECTS], T0
        )
        store.insert_readings([Reading(o, _owner(o, device_2_owner), m, ts, v) for o, m, ts, v in readings])
        # Replaying a batch (an overlapping poll) must count nothing twice.
        store.insert_readings(
            [Reading(o, _owner(o, device_2_owner), m, ts, v + 1) for o, m, ts, v in readings[:3]]
        )


def _close(got: Summary, want: Summary) -> None:
    assert (got.count, got.min, got.max, got.last, got.last_at) == (
        want.count,
        want.min,
        want.max,
        want.last,
        want.last_at,
    )
    if want.count:
        assert got.average is not None
        assert want.average is not None
        assert got.stddev is not None
        assert want.stddev is not None
        assert got.average == pytest.approx(want.average, rel=1e-9, abs=1e-9)
        # Variances from sums of squares share the same cancellation; compare them, not roots.
        assert got.stddev**2 == pytest.approx(want.stddev**2, rel=1e-7, abs=1e-6)


def _rollups(store: Store) -> dict[str, list[tuple[object, ...]]]:
    return {
        table: store.database.query(f"SELECT * FROM {table} ORDER BY object_id, metric, client, bucket")  # noqa: S608
        for table, _ in LEVELS
    }


def _rebuilt(store: Store) -> dict[str, list[tuple[object, ...]]]:
    """The rollups recomputed from scratch from the readings left before the watermark."""
    rolled = rolled_upto(store.database.query)
    conn = sqlite3.connect(store.path)
    try:
        out = {}
        for table, step in LEVELS:
            conn.execute(f"CREATE TEMP TABLE fresh AS SELECT * FROM {table} WHERE 0")  # noqa: S608
            conn.execute(rebuild_sql("temp.fresh", step, "ts < ?"), (rolled,))
            out[table] = conn.execute(
                "SELECT * FROM temp.fresh ORDER BY object_id, metric, client, bucket"
            ).fetchall()
            conn.execute("DROP TABLE temp.fresh")
        return out
    finally:
        conn.close()


def _same_rollups(store: Store) -> None:
    got, want = _rollups(store), _rebuilt(store)
    for table, _ in LEVELS:
        assert len(got[table]) == len(want[table])
        for row, ref in zip(got[table], want[table], strict=True):
            assert row[:5] == ref[:5]  # key and count
            assert row[6:8] == ref[6:8]  # min, max
            assert row[9:] == ref[9:]  # newest time and value
            assert row[5] == pytest.approx(ref[5], rel=1e-9, abs=1e-9)
            assert row[8] == pytest.approx(ref[8], rel=1e-9, abs=1e-9)


def _compare_windows(store: Store, edges: list[tuple[float, float]]) -> None:
    query = store.database.query
    for since, until in edges:
        for object_id in OBJECTS:
            for metric in METRICS:
                _close(
                    windows.summary(query, object_id, metric, since, until),
                    windows.summary_raw(query, object_id, metric, since, until),
                )
        for client in ("client_1", "client_2"):
            got = windows.client_moments(query, client, since, until)
            want = windows.client_moments_raw(query, client, since, until)
            assert got.keys() == want.keys()
            for key, (count, total, low, high, squares) in got.items():
                assert (count, low, high) == (want[key][0], want[key][2], want[key][3])
                assert total == pytest.approx(want[key][1], rel=1e-9, abs=1e-9)
                assert squares == pytest.approx(want[key][4], rel=1e-9, abs=1e-6)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batches=st.lists(_batch, min_size=1, max_size=5),
    edges=st.lists(st.tuples(_edge, _edge).map(sorted), min_size=1, max_size=6),
    cut=st.one_of(st.none(), _edge),
)
def test_rollup_statistics_equal_the_raw_ones(
    batches: list[tuple[list[tuple[str, str, float, float]], str]],
    edges: list[tuple[float, float]],
    cut: float | None,
) -> None:
    """Random series, replays, owner moves and windows: rollups answer as every raw row would.

    After a random retention cut the rollups are still exactly what the remaining rows give.
    """
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "edge.sqlite3", check=False)
        try:
            _fill(store, batches)
            _same_rollups(store)
            _compare_windows(store, [(a, b) for a, b in edges])
            if cut is not None:
                store.prune(cut)
                _same_rollups(store)
                _compare_windows(store, [(a, b) for a, b in edges])
        finally:
            store.close()


def _merged(rows: list[tuple[Any, ...]]) -> dict[int, tuple[int, float, float, float]]:
    out: dict[int, tuple[int, float, float, float]] = {}
    for b, total, low, high, count in rows:
        assert isinstance(b, int)
        n, t, lo, hi = out.get(b, (0, 0.0, math.inf, -math.inf))
        out[b] = (n + int(count), t + float(total), min(lo, float(low)), max(hi, float(high)))
    return out


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batches=st.lists(_batch, min_size=1, max_size=4),
    edges=st.lists(st.tuples(_edge, _edge).map(sorted), min_size=1, max_size=4),
    step=st.sampled_from([60.0, 120.0, 300.0, 900.0, 3600.0, 7200.0, 45.0, 90.5]),
    aligned=st.booleans(),
)
def test_rollup_series_equal_the_raw_ones(
    batches: list[tuple[list[tuple[str, str, float, float]], str]],
    edges: list[tuple[float, float]],
    step: float,
    aligned: bool,
) -> None:
    """Down-sampled series (Grafana) on a grid of whole minutes read rollups, with the raw answer."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "edge.sqlite3", check=False)
        try:
            _fill(store, batches)
            for since, until in edges:
                start = math.floor(since / step) * step if aligned else since
                for metric in METRICS:
                    got = _merged(
                        windows.bucket_rows(store.database.query, OBJECTS, metric, since, until, step, start)
                    )
                    want = _merged(
                        windows.bucket_rows_raw(
                            store.database.query, OBJECTS, metric, since, until, step, start
                        )
                    )
                    assert got.keys() == want.keys()
                    for b, (n, total, low, high) in got.items():
                        assert (n, low, high) == (want[b][0], want[b][2], want[b][3])
                        assert total == pytest.approx(want[b][1], rel=1e-9, abs=1e-9)
        finally:
            store.close()


@given(since=_edge, until=_edge)
def test_split_covers_the_window_once(since: float, until: float) -> None:
    """The pieces tile [since, until) in order, rollup pieces on their own bucket edges."""
    pieces = split(since, until)
    assert pieces[0].lo == since or since >= until
    for left, right in itertools.pairwise(pieces):
        assert left.hi == right.lo
    if since < until:
        assert pieces[-1].hi == until
    for piece in pieces:
        step = {"rollup_minute": MINUTE, "rollup_hour": HOUR}.get(piece.source)
        if step is not None:
            assert piece.lo % step == 0
            assert piece.hi % step == 0


@pytest.mark.parametrize(
    "ts",
    [T0, T0 - 1e-6, T0 + 59.999999, math.nextafter(T0, 0), math.nextafter(T0 + 60, 0), -30.0, -60.0, 0.0],
)
def test_buckets_hold_their_readings_exactly(ts: float) -> None:
    """floor_to and the SQL bucket agree and keep bucket <= ts < bucket + step even at float edges."""
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE readings (object_id, metric, ts, value, client)")
    conn.execute(
        "CREATE TABLE r (object_id, metric, client, bucket, n, total, low, high, squares, "
        "last_ts, last_value)"
    )
    conn.execute("INSERT INTO readings VALUES ('a', 'm', ?, 1.0, 'c')", (ts,))
    for step in (MINUTE, HOUR):
        conn.execute("DELETE FROM r")
        conn.execute(rebuild_sql("r", step))
        [(bucket,)] = conn.execute("SELECT bucket FROM r").fetchall()
        assert bucket == floor_to(ts, step)
        assert bucket <= ts < bucket + step
        assert ceil_to(ts, step) >= ts
        assert ceil_to(ts, step) - step < ts


def test_a_device_moved_to_another_client_brings_no_rolled_up_history(tmp_path: Path) -> None:
    """Rollups are keyed by the owner at reading time: the new owner sees only its own hours."""
    store = Store(tmp_path / "edge.sqlite3")
    store.upsert_objects([CatalogueEntry("device_1", "client_1", "temperature_sensor")], T0)
    store.insert_readings(
        [Reading("device_1", "client_1", "temperature", T0 + 5 * i, 20.0) for i in range(1440)]
    )
    store.upsert_objects([CatalogueEntry("device_1", "client_2", "temperature_sensor")], T0 + 7200)
    store.insert_readings(
        [Reading("device_1", "client_2", "temperature", T0 + 7200 + 5 * i, 30.0) for i in range(720)]
    )
    got = store.summary("device_1", "temperature", T0, T0 + 3 * HOUR)
    assert (got.count, got.min, got.max) == (720, 30.0, 30.0)
    per_metric, _ = store.client_summaries("client_1", T0, T0 + 3 * HOUR)
    assert per_metric == {}
    store.close()


def test_the_rollup_migration_back_fills_from_stored_readings(tmp_path: Path) -> None:
    """A store of the previous release gets rollups of its readings, under their owners."""
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript((Path(__file__).parents[1] / "fixtures" / "store_v0.sql").read_text())
    conn.close()
    store = Store(path)
    try:
        assert store.database.query(
            "SELECT client, bucket, n, total, low, high, last_value FROM rollup_hour "
            "WHERE object_id='device_1'"
        ) == [("client_1", int(T0), 3, 78.0, 25.0, 27.0, 27.0)]
        _same_rollups(store)
        got = store.summary("device_1", "temperature", T0 - HOUR, T0 + 2 * HOUR)
        assert (got.count, got.average, got.last) == (3, 26.0, 27.0)
    finally:
        store.close()


def test_minutes_are_rolled_up_when_they_close_and_late_readings_at_once(tmp_path: Path) -> None:
    """A poll writes no bucket until a later minute arrives; a late reading is counted at once;
    raw rows pruned under kept rollups are rolled up first, even in a minute still open."""
    store = Store(tmp_path / "edge.sqlite3")
    store.upsert_objects([CatalogueEntry("device_1", "client_1", "temperature_sensor")], T0)

    def minutes() -> list[tuple[Any, ...]]:
        return store.database.query("SELECT bucket, n FROM rollup_minute ORDER BY bucket")

    try:
        store.insert_readings(
            [Reading("device_1", "client_1", "temperature", T0 + s, 1.0) for s in range(0, 60, 5)]
        )
        assert minutes() == []
        assert rolled_upto(store.database.query) == T0
        store.insert_readings([Reading("device_1", "client_1", "temperature", T0 + 60, 2.0)])
        assert minutes() == [(int(T0), 12)]
        store.insert_readings([Reading("device_1", "client_1", "temperature", T0 + 31, 3.0)])
        assert minutes() == [(int(T0), 13)]
        assert store.summary("device_1", "temperature", T0, T0 + 120).count == 14
        store.prune(T0 + 120, rollups_before=T0 - HOUR)
        assert store.count_readings() == 0
        assert minutes() == [(int(T0), 13), (int(T0 + 60), 1)]
        got = store.summary("device_1", "temperature", T0, T0 + 120)
        assert (got.count, got.max, got.last) == (14, 3.0, 2.0)
    finally:
        store.close()
