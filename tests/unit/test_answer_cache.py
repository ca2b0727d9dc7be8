"""The answer cache gives exactly what the store computes, whatever the writes and the clock do.

Two SQLite stores receive the same writes: one plain, one :class:`CachedSqliteStore`. A
random sequence of clock moves (tiny, across minute and hour edges, onto a reading's
time), ingests (past, present and future stamps, duplicates), owner moves, anomaly
events and prunes is interleaved with questions of sliding and fixed windows in several
scopes; every answer of the cached store must equal the plain store's, to the last bit.
"""

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from iotedge.edge.normalise import CatalogueEntry, Reading
from iotedge.edge.store import AnomalyEvent, EventEnd, SqliteStore, new_event_id
from iotedge.edge.store.aio import AsyncSqliteStore
from iotedge.edge.store.cached import AnswerCache, CachedSqliteStore, shape_of
from iotedge.edge.store.records import Scope
from iotedge.edge.store.rollups import split

T0 = 1_795_957_230.5  # not on a minute: windows start inside one
OBJECTS = {"device_1": "temperature_sensor", "device_2": "humidity_sensor", "device_3": "activity_tracker"}
OWNERS = {"device_1": "client_1", "device_2": "client_1", "device_3": "client_2"}
METRICS = {"device_1": "temperature", "device_2": "humidity", "device_3": "activity_level"}
SCOPES: list[Scope] = [None, frozenset({"client_1"}), frozenset({"client_2"})]
SPANS = (20.0, 61.0, 600.0, 3600.0, 3 * 3600.0)


def _history() -> list[Reading]:
    """Three hours of readings every 30 s (plus battery every 5 min) before T0."""
    rng = random.Random(7)
    out = []
    for i in range(360):
        ts = T0 - 30 * i - 3.0
        for object_id, metric in METRICS.items():
            out.append(Reading(object_id, OWNERS[object_id], metric, ts, round(rng.uniform(10, 40), 2)))
            if i % 10 == 0:
                out.append(Reading(object_id, OWNERS[object_id], "battery_level", ts, float(90 - i // 40)))
    return out


_ops = st.lists(
    st.one_of(
        st.tuples(st.just("tick"), st.sampled_from([0.0, 1e-6, 0.4, 3.0, 29.0, 59.9, 60.0, 600.0, 3600.0])),
        st.tuples(st.just("onto"), st.integers(0, 30), st.sampled_from(SPANS)),  # since onto a reading
        st.tuples(
            st.just("ingest"),
            st.lists(st.tuples(st.sampled_from(list(METRICS)), st.integers(-200, 40)), max_size=4),
        ),
        st.tuples(
            st.just("move"),
            st.sampled_from(list(METRICS)),
            st.sampled_from(["client_1", "client_2", "client_3"]),
        ),
        st.tuples(st.just("open"), st.sampled_from(list(METRICS))),
        st.tuples(st.just("close"), st.integers(0, 5)),
        st.tuples(st.just("prune"), st.sampled_from([2 * 3600.0, 3600.0, 100.0])),
        st.tuples(
            st.just("object"), st.sampled_from(list(METRICS)), st.integers(0, 2), st.sampled_from(SPANS)
        ),
        st.tuples(
            st.just("client"), st.sampled_from(["client_1", "client_2", "client_3"]), st.sampled_from(SPANS)
        ),
        st.tuples(
            st.just("fixed"), st.sampled_from(list(METRICS)), st.integers(-7200, -60), st.integers(1, 7200)
        ),
    ),
    min_size=5,
    max_size=40,
)


async def _both(stores: tuple[AsyncSqliteStore, AsyncSqliteStore], method: str, *args: Any) -> None:
    """Ask both stores the same question and require the same answer."""
    plain, cached = stores
    assert await getattr(cached, method)(*args) == await getattr(plain, method)(*args)


async def _play(ops: list[tuple[Any, ...]], tmp: Path) -> CachedSqliteStore:
    plain = AsyncSqliteStore(SqliteStore(tmp / "plain.sqlite3", check=False))
    cached = CachedSqliteStore(SqliteStore(tmp / "cached.sqlite3", check=False))
    stores = (plain, cached)
    catalogue = [CatalogueEntry(o, OWNERS[o], kind) for o, kind in OBJECTS.items()]
    history = _history()
    now = T0
    opened: list[int] = []
    try:
        for store in stores:
            await store.upsert_objects(catalogue, T0 - 4 * 3600)
            await store.insert_readings(history)
        for op in ops:
            kind = op[0]
            if kind == "tick":
                now += op[1]
            elif kind == "onto":  # since lands exactly on a stored reading
                now = max(now, history[op[1] * 3].ts + op[2])
            elif kind == "ingest":
                batch = [Reading(o, OWNERS[o], METRICS[o], now + age, float(age)) for o, age in op[1]]
                for store in stores:
                    await store.insert_readings(batch)
            elif kind == "move":
                entry = CatalogueEntry(op[1], op[2], OBJECTS[op[1]])
                for store in stores:
                    await store.upsert_objects([entry], now)
            elif kind == "open":
                event = AnomalyEvent(
                    id=new_event_id(),
                    object_id=op[1],
                    client=OWNERS[op[1]],
                    type=OBJECTS[op[1]],
                    metric=METRICS[op[1]],
                    rule="r",
                    severity="warning",
                    value=1.0,
                    threshold=0.0,
                    message="m",
                    started_at=now,
                )
                for store in stores:
                    await store.record_transitions([event], [], edge_id="e", now=now)
                opened.append(event.id)
            elif kind == "close" and opened:
                end = EventEnd(opened.pop(op[1] % len(opened)), now, 2.0)
                for store in stores:
                    await store.record_transitions([], [end], edge_id="e", now=now)
            elif kind == "prune":
                for store in stores:
                    await store.prune(now - op[1])
            elif kind == "object":
                object_id, scope, since, until = op[1], SCOPES[op[2]], now - op[3], now + 1e-6
                await _both(stores, "object_answer", object_id, scope, since, until)
            elif kind == "client":
                client, since, until = op[1], now - op[2], now + 1e-6
                await _both(stores, "client_answer", client, since, until)
            elif kind == "fixed":
                object_id, since, until = op[1], T0 + op[2], T0 + op[2] + op[3]
                await _both(stores, "object_answer", object_id, None, since, until)
                await _both(stores, "client_answer", OWNERS[object_id], since, until)
            # Every question again after each step: most of these are cache hits.
            for object_id in METRICS:
                for span in SPANS[:4]:
                    since, until = now - span, now + 1e-6
                    await _both(stores, "object_answer", object_id, SCOPES[1], since, until)
            for client in ("client_1", "client_2"):
                since, until = now - 3600.0, now + 1e-6
                await _both(stores, "client_answer", client, since, until)
        return cached
    finally:
        for store in stores:
            await store.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_ops)
def test_cached_answers_equal_the_store_at_every_moment(
    ops: list[tuple[Any, ...]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    cached = asyncio.run(_play(ops, tmp_path_factory.mktemp("cache")))
    assert cached.cache.hits + cached.cache.misses > 0


def test_the_cache_is_used_and_an_ingest_shows_in_the_next_answer(tmp_path: Path) -> None:
    async def main() -> None:
        store = CachedSqliteStore(SqliteStore(tmp_path / "edge.sqlite3", check=False))
        try:
            await store.upsert_objects([CatalogueEntry("device_1", "client_1", "temperature_sensor")], T0)
            await store.insert_readings([Reading("device_1", "client_1", "temperature", T0 - 10, 20.0)])
            first = await store.object_answer("device_1", None, T0 - 3600, T0 + 1e-6)
            again = await store.object_answer("device_1", None, T0 - 3600 + 0.5, T0 + 0.5)
            assert again is first  # a hit: the same record, not a recomputation
            await store.insert_readings([Reading("device_1", "client_1", "temperature", T0 + 1, 30.0)])
            after = await store.object_answer("device_1", None, T0 - 3600 + 2, T0 + 2)
            assert after is not None and after.summaries["temperature"].count == 2
            clients = await store.client_answer("client_1", T0 - 3600 + 2, T0 + 2)
            await store.insert_readings([Reading("device_1", "client_1", "temperature", T0 + 2, 40.0)])
            clients_after = await store.client_answer("client_1", T0 - 3600 + 3, T0 + 3)
            assert clients.per_metric["temperature"].count == 2
            assert clients_after.per_metric["temperature"].count == 3
        finally:
            await store.close()

    asyncio.run(main())


def test_readings_leaving_and_entering_a_sliding_window_show_without_an_ingest(tmp_path: Path) -> None:
    """A reading stamped ahead of the clock enters when ``until`` passes it; the oldest leaves."""

    async def main() -> None:
        store = CachedSqliteStore(SqliteStore(tmp_path / "edge.sqlite3", check=False))
        try:
            await store.upsert_objects([CatalogueEntry("device_1", "client_1", "temperature_sensor")], T0)
            stamps = (T0 - 3600 + 2, T0 - 10, T0 + 5)  # T0 is 30.5 s into a minute: no piece changes
            await store.insert_readings(
                [Reading("device_1", "client_1", "temperature", t, 20.0) for t in stamps]
            )
            counts = []
            for moved in (0.0, 1.0, 3.0, 6.0):
                answer = await store.object_answer("device_1", None, T0 + moved - 3600, T0 + moved + 1e-6)
                assert answer is not None
                counts.append(answer.summaries["temperature"].count)
            assert counts == [2, 2, 1, 2]
        finally:
            await store.close()

    asyncio.run(main())


def test_a_batch_that_closes_minutes_drops_every_answer(tmp_path: Path) -> None:
    """Closing minutes moves where every series' windows are cut: no answer cut before is kept."""

    async def main() -> None:
        store = CachedSqliteStore(SqliteStore(tmp_path / "edge.sqlite3", check=False))
        try:
            await store.upsert_objects(
                [CatalogueEntry(o, OWNERS[o], kind) for o, kind in OBJECTS.items() if o != "device_3"], T0
            )
            await store.insert_readings([Reading("device_1", "client_1", "temperature", T0 - 1, 20.0)])
            await store.object_answer("device_1", None, T0 - 3600, T0)
            assert len(store.cache) == 1
            # Another object in the same minute closes nothing: device_1's answer stays.
            await store.insert_readings([Reading("device_2", "client_1", "humidity", T0 - 2, 50.0)])
            assert len(store.cache) == 1
            # Another object a minute later closes T0's minute for every series.
            await store.insert_readings([Reading("device_2", "client_1", "humidity", T0 + 60, 51.0)])
            assert len(store.cache) == 0
        finally:
            await store.close()

    asyncio.run(main())


def test_the_cache_keeps_at_most_its_size() -> None:
    cache = AnswerCache(max_answers=3)
    for key in range(10):
        cache.put(("o", str(key)), _entry(key))
    assert len(cache) == 3
    assert cache.get(("o", "9"), None, 0.0, 1.0, (0, False, 0, False))[0]
    assert not cache.get(("o", "0"), None, 0.0, 1.0, (0, False, 0, False))[0]
    for window in range(12):  # one key's answers: at most 8
        cache.put(("o", "9"), _entry(window))
    assert len(cache) == 3
    cache.drop([("o", "9")])
    assert len(cache) == 0


def test_a_client_answer_weighs_its_objects() -> None:
    """A large client's answers count by their objects: they cannot fill memory 8 at a time."""
    cache = AnswerCache(max_answers=10)
    cache.put(("o", "a"), _entry(1))
    cache.put(("c", "big"), _entry(2, weight=6))
    assert len(cache) == 7
    cache.put(("c", "big"), _entry(3, weight=6))  # two would weigh 12: the older one goes
    assert len(cache) == 7
    assert cache.get(("c", "big"), None, 0.0, 1.0, (0, False, 0, False)) == (True, 3)
    cache.put(("c", "huge"), _entry(4, weight=11))  # heavier than the whole cache: not kept
    assert not cache.get(("c", "huge"), None, 0.0, 1.0, (0, False, 0, False))[0]
    cache.put(("c", "other"), _entry(5, weight=5))  # the least recently asked go first
    assert len(cache) == 5
    assert not cache.get(("o", "a"), None, 0.0, 1.0, (0, False, 0, False))[0]
    cache.drop([("c", "other")])
    assert len(cache) == 0


def _entry(answer: int, weight: int = 1) -> Any:
    from iotedge.edge.store.cached import _Entry

    return _Entry(None, 0.0, 1.0, 0.0, 1.0, (0, False, 0, False), answer, weight)


def _pieces(since: float, until: float) -> list[tuple[str, float | None, float | None]]:
    """``split``'s pieces without the window's own two ends."""
    pieces = split(since, until)
    last = len(pieces) - 1
    return [
        (
            p.source,
            None if n == 0 and p.source == "raw" else p.lo,
            None if n == last and p.source == "raw" else p.hi,
        )
        for n, p in enumerate(pieces)
    ]


_inside_a_minute = st.floats(1e-3, 59.999)  # strictly inside once added to an epoch near 1.8e9


@given(
    start=st.integers(0, 200),
    minutes=st.integers(0, 3 * 24 * 60),
    on_edges=st.tuples(st.booleans(), st.booleans()),
    lows=st.tuples(_inside_a_minute, _inside_a_minute),
    highs=st.tuples(_inside_a_minute, _inside_a_minute),
)
def test_windows_of_one_shape_are_cut_into_the_same_pieces(
    start: int,
    minutes: int,
    on_edges: tuple[bool, bool],
    lows: tuple[float, float],
    highs: tuple[float, float],
) -> None:
    """Equal :func:`shape_of` means ``split`` cuts both windows alike but for their two raw ends.

    Two windows of one shape are drawn directly (same minutes, each end on its minute's edge
    in both or in neither), so no example is filtered out but the empty ones.
    """
    base = T0 - T0 % 3600 + start * 60  # near hour edges too
    low_on_edge, high_on_edge = on_edges
    windows = [
        (base + (0.0 if low_on_edge else lo), base + minutes * 60 + (0.0 if high_on_edge else hi))
        for lo, hi in zip(lows, highs, strict=True)
    ]
    assume(all(since < until for since, until in windows))
    assert shape_of(*windows[0]) == shape_of(*windows[1])
    assert _pieces(*windows[0]) == _pieces(*windows[1])
