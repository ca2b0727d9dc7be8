"""The store's semantics on both backends through the async interface: SQLite and a real PostgreSQL.

Each case runs on :class:`AsyncSqliteStore` and on :class:`PostgresStore` (a database of this
run's own on 127.0.0.1:5432, emptied before each case). The last cases feed both the same
random history and require the same statistics from each.
"""

import asyncio
import inspect
import math
import random
import sqlite3
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from iotedge.edge.normalise import CatalogueEntry, Reading
from iotedge.edge.stats import summarise
from iotedge.edge.store import (
    EMPTY,
    STATISTICS,
    AnomalyEvent,
    Bucket,
    EventEnd,
    SqliteStore,
    Summary,
    new_event_id,
    windows,
)
from iotedge.edge.store.aio import AsyncEdgeStore, AsyncSqliteStore
from iotedge.edge.store.cached import CachedSqliteStore
from iotedge.edge.store.postgres import (
    PG_SCHEMA_VERSION,
    PostgresStore,
    open_pg_store,
    pg_schema_version,
    redact_url,
    rollups as pg_rollups,
    windows as pg_windows,
)
from iotedge.edge.store.postgres.schema import PG_MIGRATIONS
from iotedge.edge.store.rollups import LEVELS, rebuild_sql, rolled_upto
from iotedge.errors import StoreError
from tests.conftest import require
from tests.pgdb import scratch_database, server_problem

pytestmark = (
    pytest.mark.slow
)  # PostgreSQL property tests: among the longest modules (make test starts them first)

T = TypeVar("T")
T0 = 1_795_953_600.0
OBJECTS = [
    CatalogueEntry("device_1", "client_1", "temperature_sensor"),
    CatalogueEntry("device_2", "client_1", "humidity_sensor"),
    CatalogueEntry("device_3", "client_2", "activity_tracker"),
]
Opener = Callable[[], Awaitable[AsyncEdgeStore]]
_TABLES = "objects, readings, latest, anomalies, outbox, rollup_minute, rollup_hour"


def _sqlite_conforms(store: AsyncSqliteStore) -> AsyncEdgeStore:
    return store  # mypy checks that both backends implement the protocol


def _pg_conforms(store: PostgresStore) -> AsyncEdgeStore:
    return store


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A database of this run's own, dropped after the module."""
    problem = server_problem()
    require(problem is None, problem or "")
    with scratch_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "sqlite-cached", "postgresql"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """Opens an empty store of the parametrised backend (call it again to reopen).

    ``sqlite-cached`` is SQLite with the edge's answer cache (:mod:`iotedge.edge.store.cached`).
    """
    if request.param.startswith("sqlite"):
        path = tmp_path / "edge.sqlite3"
        kind = CachedSqliteStore if request.param == "sqlite-cached" else AsyncSqliteStore

        async def open_sqlite() -> AsyncEdgeStore:
            return kind(SqliteStore(path, check=False))

        return open_sqlite
    url: str = request.getfixturevalue("pg_url")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {_TABLES}")
    return lambda: open_pg_store(url)


@pytest.fixture(scope="module", autouse=True)
def _pg_migrated(request: pytest.FixtureRequest) -> None:
    """Create the tables before the first TRUNCATE (when PostgreSQL cases run at all)."""
    if server_problem() is not None:
        return
    url: str = request.getfixturevalue("pg_url")

    async def migrate() -> None:
        await (await open_pg_store(url)).close()

    asyncio.run(migrate())


def run(opener: Opener, scenario: Callable[[AsyncEdgeStore], Awaitable[T]], *, fill: bool = True) -> T:
    """Open a store, fill it with the standard hour of readings, run ``scenario``, close."""

    async def main() -> T:
        store = await opener()
        try:
            if fill:
                await _fill(store)
            return await scenario(store)
        finally:
            await store.close()

    return asyncio.run(main())


async def _fill(store: AsyncEdgeStore) -> None:
    """Three objects of two clients and an hour of 5 s readings."""
    await store.upsert_objects(OBJECTS, T0)
    rng = random.Random(1)
    batch = []
    for i in range(720):
        ts = T0 + 5 * i
        batch.append(Reading("device_1", "client_1", "temperature", ts, round(rng.uniform(20, 30), 2)))
        batch.append(Reading("device_1", "client_1", "battery_level", ts, float(90 - i // 100)))
        batch.append(Reading("device_2", "client_1", "humidity", ts, float(rng.randint(40, 80))))
        batch.append(Reading("device_3", "client_2", "activity_level", ts, float(rng.randint(0, 100))))
    assert await store.insert_readings(batch) == len(batch)


async def _values(
    store: AsyncEdgeStore, object_id: str, metric: str, since: float, until: float
) -> list[float]:
    return [v for _, v in await store.raw_series(object_id, metric, since, until, 100_000)]


def _event(object_id: str, client: str, at: float, *, ended: float | None = None) -> AnomalyEvent:
    return AnomalyEvent(
        id=new_event_id(),
        object_id=object_id,
        client=client,
        type="temperature_sensor",
        metric="temperature",
        rule="temperature_high",
        severity="warning",
        value=35.0,
        threshold=30.0,
        message="hot",
        started_at=at,
        ended_at=ended,
    )


@pytest.mark.parametrize(("since", "until"), [(T0, T0 + 3600), (T0 + 600, T0 + 1200), (T0 + 3595, T0 + 3600)])
def test_summary_matches_the_reference(opener: Opener, since: float, until: float) -> None:
    """SQL statistics equal the pure-Python reference over the same window."""

    async def scenario(store: AsyncEdgeStore) -> None:
        expected = summarise(await _values(store, "device_1", "temperature", since, until))
        got = await store.summary("device_1", "temperature", since, until)
        assert got.count == expected.count
        assert got.average == pytest.approx(expected.average)
        assert got.stddev == pytest.approx(expected.stddev, abs=1e-6)
        assert (got.min, got.max, got.last) == (expected.min, expected.max, expected.last)
        empty = await store.summary("device_1", "temperature", T0 - 100, T0 - 50)
        assert (empty.count, empty.average, empty.last) == (0, None, None)

    run(opener, scenario)


def test_client_statistics_never_mix_metrics(opener: Opener) -> None:
    """Per-client statistics are per metric, each from that metric's readings only."""

    async def scenario(store: AsyncEdgeStore) -> None:
        per_metric, per_object = await store.client_summaries("client_1", T0, T0 + 3600)
        assert set(per_metric) == {"temperature", "humidity", "battery_level"}
        humidity = summarise(await _values(store, "device_2", "humidity", T0, T0 + 3600))
        assert per_metric["humidity"].average == pytest.approx(humidity.average)
        assert per_metric["humidity"].count == 720
        assert per_metric["humidity"].last == humidity.last
        assert set(per_object) == {"device_1", "device_2"}

    run(opener, scenario)


def test_inserts_are_idempotent_and_count_only_new_rows(opener: Opener) -> None:
    """Replays store nothing; a mixed batch (with a duplicate inside) counts only its new rows."""

    async def scenario(store: AsyncEdgeStore) -> None:
        assert await store.insert_readings([Reading("device_1", "client_1", "temperature", T0, 99.0)]) == 0
        assert (await store.summary("device_1", "temperature", T0, T0 + 1)).max != 99.0
        late = T0 + 7200
        mixed = [
            Reading("device_1", "client_1", "temperature", T0 + 5, 1.0),
            Reading("device_1", "client_1", "temperature", late, 2.0),
            Reading("device_1", "client_1", "temperature", late, 3.0),
        ]
        assert await store.insert_readings(mixed) == 1
        assert await store.count_readings() == 4 * 720 + 1
        assert (await store.latest_of("device_1"))["temperature"][0] == late
        assert await store.insert_readings([]) == 0

    run(opener, scenario)


def test_series_buckets(opener: Opener) -> None:
    """Down-sampling averages each step; counts add up to the raw count."""

    async def scenario(store: AsyncEdgeStore) -> None:
        buckets = await store.bucketed(["device_1"], "temperature", T0, T0 + 3600, 600)
        assert len(buckets) == 6
        assert sum(b.count for b in buckets) == 720
        first = summarise(await _values(store, "device_1", "temperature", T0, T0 + 600))
        assert buckets[0].average == pytest.approx(first.average)
        assert buckets[0].min == first.min
        assert [b.ts for b in buckets] == [T0 + 600 * k for k in range(6)]
        both = await store.bucketed(["device_1", "device_2"], "humidity", T0, T0 + 3600, 3600, origin=T0)
        assert [b.count for b in both] == [720]

    run(opener, scenario)


def test_scope_filters_objects_latest_and_clients(opener: Opener) -> None:
    """A client scope sees only its objects; None sees all; the empty scope sees nothing."""

    async def scenario(store: AsyncEdgeStore) -> None:
        assert [o.id for o in await store.objects(frozenset({"client_2"}))] == ["device_3"]
        assert len(await store.objects(None)) == 3
        assert await store.objects(frozenset()) == []
        assert await store.object("device_3", frozenset({"client_1"})) is None
        assert (await store.object("device_3", None)) is not None
        assert {row[1] for row in await store.latest(frozenset({"client_1"}))} == {"client_1"}
        assert await store.latest(frozenset()) == []
        assert await store.clients(None) == ["client_1", "client_2"]
        assert await store.clients(frozenset({"client_2", "client_9"})) == ["client_2"]
        recent = await store.recent_values("device_1", "battery_level", 3)
        assert recent == [83.0, 83.0, 83.0]

    run(opener, scenario)


def test_retention_prunes_old_readings_and_data_survives_reopening(opener: Opener) -> None:
    """prune() deletes readings older than the cut-off and nothing newer; a reopened store keeps the rest."""

    async def scenario(store: AsyncEdgeStore) -> None:
        assert await store.prune(T0 + 1800) == 4 * 360
        assert (await store.summary("device_1", "temperature", T0, T0 + 1800)).count == 0
        assert (await store.summary("device_1", "temperature", T0 + 1800, T0 + 3600)).count == 360
        assert await store.size_bytes() > 0
        assert await store.writable()

    run(opener, scenario)

    async def reopened(store: AsyncEdgeStore) -> int:
        return await store.count_readings()

    assert run(opener, reopened, fill=False) == 4 * 360


def test_rollups_outlive_pruned_readings_until_their_own_retention(opener: Opener) -> None:
    """With ``rollups_before`` the raw rows go and their buckets stay, until the rollups' own cut."""

    async def scenario(store: AsyncEdgeStore) -> None:
        whole = await store.summary("device_1", "temperature", T0, T0 + 3600)
        assert await store.prune(T0 + 1800, rollups_before=T0 + 1800) == 4 * 360
        assert await store.count_readings() == 4 * 360
        kept = await store.summary("device_1", "temperature", T0, T0 + 3600)
        assert (kept.count, kept.min, kept.max, kept.last) == (720, whole.min, whole.max, whole.last)
        assert kept.average == pytest.approx(whole.average)
        assert (await store.summary("device_1", "temperature", T0 + 1800, T0 + 3600)).count == 360
        await store.prune(T0 + 3600, rollups_before=T0 + 3600)  # the rollups' cut reaches the hour's end
        assert (await store.summary("device_1", "temperature", T0, T0 + 3600)).count == 0

    run(opener, scenario)


def test_transitions_write_events_and_outbox_together(opener: Opener) -> None:
    """Opening and closing an event adds one outbox row each, with an idempotency key."""

    async def scenario(store: AsyncEdgeStore) -> list[tuple[Any, ...]]:
        event = _event("device_1", "client_1", T0)
        [event_id] = await store.record_transitions([event], [], edge_id="e1", now=T0)
        assert [e.id for e in await store.open_anomalies()] == [event_id]
        await store.record_transitions([], [EventEnd(event_id, T0 + 60, 25.0)], edge_id="e1", now=T0 + 60)
        await store.record_transitions([], [EventEnd(event_id, T0 + 90, 26.0)], edge_id="e1", now=T0 + 90)
        [record] = await store.anomalies(frozenset({"client_1"}))
        assert (record.ended_at, record.last_value) == (T0 + 60, 25.0)
        assert await store.anomalies(frozenset({"client_2"})) == []
        assert await store.open_anomalies() == []
        assert await store.anomaly_counts("device_1") == (0, 1)
        return [(event_id,)]

    [(event_id,)] = run(opener, scenario)
    rows = _outbox(opener)
    assert rows == [("opened", f"e1:{event_id}:opened"), ("resolved", f"e1:{event_id}:resolved")]


def _outbox(opener: Opener) -> list[tuple[Any, ...]]:
    """The outbox rows (transition, idempotency key), in order, read beside the interface."""

    async def read(store: AsyncEdgeStore) -> list[tuple[Any, ...]]:
        if isinstance(store, AsyncSqliteStore):
            return store.sync.database.query("SELECT transition, idempotency_key FROM outbox ORDER BY id")
        assert isinstance(store, PostgresStore)
        return await store._query("SELECT transition, idempotency_key FROM outbox ORDER BY id")

    return run(opener, read, fill=False)


def test_anomaly_filters(opener: Opener) -> None:
    """Filters by object list, state and time overlap; newest first; a limit."""

    async def scenario(store: AsyncEdgeStore) -> None:
        done = _event("device_1", "client_1", T0, ended=T0 + 10)
        live = _event("device_2", "client_1", T0 + 100)
        await store.record_transitions([done, live], [], edge_id="e", now=T0 + 100)
        scope = frozenset({"client_1"})
        assert [e.id for e in await store.anomalies(scope)] == [live.id, done.id]
        assert [e.id for e in await store.anomalies(scope, state="open")] == [live.id]
        assert [e.id for e in await store.anomalies(scope, state="resolved")] == [done.id]
        assert [e.id for e in await store.anomalies(scope, object_id=["device_1"])] == [done.id]
        assert await store.anomalies(scope, object_id=[]) == []
        assert [e.id for e in await store.anomalies(scope, since=T0 + 50)] == [live.id]
        assert [e.id for e in await store.anomalies(scope, until=T0 + 50)] == [done.id]
        assert len(await store.anomalies(scope, limit=1)) == 1
        assert (await store.anomalies(scope, state="resolved"))[0].last_value == 35.0

    run(opener, scenario)
    assert len(_outbox(opener)) == 3  # opened and resolved in one batch, and one opened


def test_a_moved_device_brings_no_history_and_gets_it_back(opener: Opener) -> None:
    """The new owner sees nothing of the old owner's history; moved back, the old owner sees only its own."""

    def readings(client: str, start: float, values: list[float]) -> list[Reading]:
        return [Reading("device_3", client, "temperature", start + 5 * i, v) for i, v in enumerate(values)]

    window = (T0 - 1, T0 + 3600)

    async def scenario(store: AsyncEdgeStore) -> None:
        await store.upsert_objects([CatalogueEntry("device_3", "client_2", "temperature_sensor")], T0)
        await store.insert_readings(readings("client_2", T0, [21.0, 22.0, 23.0]))
        await store.record_transitions(
            [_event("device_3", "client_2", T0, ended=T0 + 5)], [], edge_id="e", now=T0
        )
        await store.upsert_objects([CatalogueEntry("device_3", "client_1", "temperature_sensor")], T0 + 100)
        assert (await store.summary("device_3", "temperature", *window)).count == 0
        assert await store.raw_series("device_3", "temperature", *window, 100) == []
        assert await store.latest_of("device_3") == {}
        assert await store.latest(frozenset({"client_1"})) == []
        assert await store.anomaly_counts("device_3") == (0, 0)
        assert await store.client_summaries("client_1", *window) == ({}, {})
        assert await store.anomalies(frozenset({"client_1"})) == []
        await store.insert_readings(readings("client_1", T0 + 200, [30.0, 31.0]))
        got = await store.summary("device_3", "temperature", *window)
        assert (got.count, got.last) == (2, 31.0)
        await store.upsert_objects([CatalogueEntry("device_3", "client_2", "temperature_sensor")], T0 + 300)
        assert [v for _, v in await store.raw_series("device_3", "temperature", *window, 100)] == [
            21.0,
            22.0,
            23.0,
        ]
        assert (await store.bucketed(["device_3"], "temperature", *window, 3600))[0].count == 3
        assert await store.anomaly_counts("device_3") == (0, 1)
        per_metric, _ = await store.client_summaries("client_2", *window)
        assert per_metric["temperature"].max == 23.0
        assert len(await store.anomalies(frozenset({"client_2"}))) == 1

    run(opener, scenario, fill=False)


# -- the same random history on both backends gives the same statistics

_RANDOM_OBJECTS = ("device_1", "device_2", "device_3")
_METRICS = ("temperature", "humidity")


def _random_history(seed: int) -> list[tuple[list[CatalogueEntry], list[Reading]]]:
    """Batches of (catalogue, readings) over two days: replays, owner moves, uneven gaps."""
    rng = random.Random(seed)
    owners = {o: rng.choice(["client_1", "client_2"]) for o in _RANDOM_OBJECTS}
    steps: list[tuple[list[CatalogueEntry], list[Reading]]] = []
    sent: list[Reading] = []
    for _ in range(6):
        if rng.random() < 0.4:
            moved = rng.choice(_RANDOM_OBJECTS)
            owners[moved] = "client_2" if owners[moved] == "client_1" else "client_1"
        batch = [
            Reading(o, owners[o], m, round(T0 + rng.uniform(0, 172_800), 3), round(rng.gauss(20, 8), 2))
            for o in _RANDOM_OBJECTS
            for m in _METRICS
            for _ in range(rng.randint(0, 300))
        ]
        batch += rng.sample(sent, min(len(sent), 20))  # replays
        sent += batch
        steps.append(([CatalogueEntry(o, c, "sensor") for o, c in owners.items()], batch))
    return steps


def _windows(seed: int) -> list[tuple[float, float]]:
    rng = random.Random(seed + 1000)
    edges = [(T0, T0 + 172_800), (T0 + 3600, T0 + 7200), (T0 + 59.5, T0 + 86_400.25)]
    for _ in range(4):
        a, b = sorted(round(T0 + rng.uniform(-100, 173_000), 2) for _ in range(2))
        edges.append((a, b))
    return edges


def _same(a: Summary, b: Summary) -> None:
    assert (a.count, a.min, a.max, a.last, a.last_at) == (b.count, b.min, b.max, b.last, b.last_at)
    if a.count:
        assert a.average == pytest.approx(b.average, rel=1e-9)
        assert a.stddev == pytest.approx(b.stddev, rel=1e-6, abs=1e-6)


async def _answers(store: AsyncEdgeStore, seed: int) -> list[Any]:
    out: list[Any] = []
    for entries, batch in _random_history(seed):
        await store.upsert_objects(entries, T0)
        out.append(await store.insert_readings(batch))
    for since, until in _windows(seed):
        for object_id in _RANDOM_OBJECTS:
            for metric in _METRICS:
                out.append(await store.summary(object_id, metric, since, until))
        for client in ("client_1", "client_2"):
            out.append(await store.client_summaries(client, since, until))
        for metric in _METRICS:
            out.append(await store.bucketed(list(_RANDOM_OBJECTS), metric, since, until, 3600 * 5, origin=T0))
    out.append(await store.prune(T0 + 86_400))
    out.append(await store.summary("device_1", "temperature", T0, T0 + 172_800))
    out.append(sorted(await store.latest(None)))
    return out


def _compare(a: Any, b: Any) -> None:
    if isinstance(a, Summary):
        assert isinstance(b, Summary)
        _same(a, b)
    elif isinstance(a, tuple | list):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _compare(x, y)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _compare(a[key], b[key])
    elif isinstance(a, Bucket):
        assert (a.ts, a.min, a.max, a.count) == (b.ts, b.min, b.max, b.count)
        assert a.average == pytest.approx(b.average, rel=1e-9)
    else:
        assert a == b


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_both_backends_give_the_same_statistics(pg_url: str, tmp_path: Path, seed: int) -> None:
    """The same random history (replays, owner moves, a retention cut) answers the same on both."""

    async def both() -> tuple[list[Any], list[Any]]:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f"TRUNCATE {_TABLES}")
        lite = AsyncSqliteStore(SqliteStore(tmp_path / f"s{seed}.sqlite3", check=False))
        pg = await open_pg_store(pg_url)
        try:
            return await _answers(lite, seed), await _answers(pg, seed)
        finally:
            await lite.close()
            await pg.close()

    lite, pg = asyncio.run(both())
    assert sum(lite[:6]) > 0
    _compare(lite, pg)


# -- opening PostgreSQL


def test_an_unreachable_server_is_one_clear_error_without_the_password() -> None:
    """Nothing listens on port 1: one StoreError naming the URL, never the password."""
    url = "postgresql://edge:s3cret-pw@127.0.0.1:1/iotedge"
    with pytest.raises(StoreError) as caught:
        asyncio.run(open_pg_store(url))
    message = str(caught.value)
    assert "postgresql://edge@127.0.0.1:1/iotedge" in message
    assert "s3cret" not in message
    assert "\n" not in message
    assert sorted(redact_url("host=db user=edge password=x dbname=e").split()) == [
        "dbname=e",
        "host=db",
        "user=edge",
    ]
    assert redact_url("postgresql://db/e") == "postgresql://db/e"


def test_migrations_run_once_even_when_edges_open_together() -> None:
    """Three stores opening a fresh database at once: the schema is created once, at the current version."""
    problem = server_problem()
    require(problem is None, problem or "")

    async def together(url: str) -> int:
        stores = await asyncio.gather(*(open_pg_store(url) for _ in range(3)))
        for store in stores:
            await store.close()
        async with await psycopg.AsyncConnection.connect(url) as conn:
            assert await pg_schema_version(conn) == PG_SCHEMA_VERSION
            cur = await conn.execute("SELECT COUNT(*) FROM schema_version")
            row = await cur.fetchone()
            assert row is not None
            return int(row[0])

    with scratch_database() as url:
        assert asyncio.run(together(url)) == len(PG_MIGRATIONS)  # one row per step


def test_a_dropped_connection_is_one_store_error_then_the_pool_reconnects(pg_url: str) -> None:
    """The server ends the store's session: that call fails as a StoreError, the next one works."""

    async def scenario() -> None:
        store = await open_pg_store(pg_url, min_size=1, max_size=1)
        try:
            assert await store.writable()
            with psycopg.connect(pg_url, autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            with pytest.raises(StoreError, match="store read failed on postgresql://"):
                await store.count_readings()
            assert await store.count_readings() >= 0
        finally:
            await store.close()

    asyncio.run(scenario())


def test_concurrent_writers_of_the_same_keys_neither_deadlock_nor_duplicate(pg_url: str) -> None:
    """Two connections store overlapping batches in opposite orders at once: every reading once."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {_TABLES}")
    objects = [CatalogueEntry(f"device_{i}", "client_1", "sensor") for i in range(1000)]
    batches = [
        [Reading(o.id, o.client, m, T0 + 5 * step, float(step)) for o in objects for m in ("a", "b")]
        for step in range(5)
    ]

    async def scenario() -> tuple[int, int, list[float]]:
        store = await open_pg_store(pg_url, min_size=2, max_size=2)
        try:
            await store.upsert_objects(objects, T0)
            forward = asyncio.gather(*(store.insert_readings(b) for b in batches))
            backward = asyncio.gather(*(store.insert_readings(b[::-1]) for b in reversed(batches)))
            counts = await asyncio.gather(forward, backward)
            newest = sorted({ts for _, _, _, ts, _ in await store.latest(None)})
            return sum(map(sum, counts)), await store.count_readings(), newest
        finally:
            await store.close()

    new, stored, newest = asyncio.run(scenario())
    assert new == stored == 5 * 1000 * 2
    assert newest == [T0 + 20]


def test_the_async_interface_has_every_operation_with_the_same_signature() -> None:
    """Same names, arguments and results as SqliteStore's methods; both backends have them as coroutines."""
    names = {n for n, v in vars(AsyncEdgeStore).items() if callable(v) and not n.startswith("_")}
    assert names
    for name in sorted(names):
        assert inspect.signature(getattr(SqliteStore, name)) == inspect.signature(
            getattr(AsyncEdgeStore, name)
        ), name
        for backend in (AsyncSqliteStore, PostgresStore):
            method = getattr(backend, name)
            assert inspect.iscoroutinefunction(method), (backend, name)
            assert inspect.signature(method) == inspect.signature(getattr(AsyncEdgeStore, name)), (
                backend,
                name,
            )


def test_a_database_from_a_newer_release_is_refused() -> None:
    """A schema version above this release's is one StoreError, and nothing is changed."""
    problem = server_problem()
    require(problem is None, problem or "")
    with scratch_database() as url:
        asyncio.run(_open_and_close(url))
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO schema_version VALUES (%s, 'from the future', 0)", (PG_SCHEMA_VERSION + 1,)
            )
        with pytest.raises(StoreError, match="newer than this release"):
            asyncio.run(open_pg_store(url))


async def _open_and_close(url: str) -> None:
    await (await open_pg_store(url)).close()


# -- rollups: on both backends, window answers from rollups equal the raw computation

_GRID = 4  # timestamps on a quarter-second grid: many land exactly on bucket edges
_SPAN = 3 * 3600 + 600  # three hours and a bit, so windows cross hour edges
_ROLLUP_OBJECTS = ("device_1", "device_2")
_ts = st.integers(min_value=0, max_value=_SPAN * _GRID).map(lambda i: T0 + i / _GRID)
_value = st.integers(min_value=-100_000, max_value=100_000).map(lambda i: i / 100)
_reading = st.tuples(st.sampled_from(_ROLLUP_OBJECTS), st.sampled_from(_METRICS), _ts, _value)
# A batch of readings and the owner of device_2 while it arrives (it moves between clients).
_batch = st.tuples(st.lists(_reading, max_size=60), st.sampled_from(("client_1", "client_2")))
_edge = st.integers(min_value=-600 * _GRID, max_value=(_SPAN + 600) * _GRID).map(lambda i: T0 + i / _GRID)
_Batches = list[tuple[list[tuple[str, str, float, float]], str]]


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_store(request: pytest.FixtureRequest) -> Callable[[], AbstractAsyncContextManager[AsyncEdgeStore]]:
    """Opens an empty store of the parametrised backend, once per generated example."""
    url: str | None = request.getfixturevalue("pg_url") if request.param == "postgresql" else None

    @asynccontextmanager
    async def fresh() -> AsyncIterator[AsyncEdgeStore]:
        if url is None:
            with tempfile.TemporaryDirectory() as tmp:
                lite = AsyncSqliteStore(SqliteStore(Path(tmp) / "edge.sqlite3", check=False))
                try:
                    yield lite
                finally:
                    await lite.close()
            return
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"TRUNCATE {_TABLES}")
        pg = await open_pg_store(url, max_size=1)
        try:
            yield pg
        finally:
            await pg.close()

    return fresh


def _device_owner(object_id: str, device_2_owner: str) -> str:
    return device_2_owner if object_id == "device_2" else "client_1"


async def _fill_batches(store: AsyncEdgeStore, batches: _Batches) -> None:
    for readings, owner in batches:
        await store.upsert_objects(
            [CatalogueEntry(o, _device_owner(o, owner), "sensor") for o in _ROLLUP_OBJECTS], T0
        )
        await store.insert_readings([Reading(o, _device_owner(o, owner), m, t, v) for o, m, t, v in readings])
        # Replaying part of a batch with other values (an overlapping poll) must count nothing twice.
        await store.insert_readings(
            [Reading(o, _device_owner(o, owner), m, t, v + 1) for o, m, t, v in readings[:3]]
        )


async def _stored_and_rebuilt(store: AsyncEdgeStore) -> dict[str, tuple[list[Any], list[Any]]]:
    """Per rollup level: its rows, and the rows recomputed from scratch from the readings left."""
    order = "ORDER BY object_id, metric, client, bucket"
    out: dict[str, tuple[list[Any], list[Any]]] = {}
    for table, step in LEVELS:
        if isinstance(store, PostgresStore):
            async with store._conn() as conn:
                await conn.execute(f"CREATE TEMP TABLE rebuilt (LIKE {table}) ON COMMIT DROP")
                await conn.execute(pg_rollups.rebuild_sql("rebuilt", step))
                want = await (await conn.execute(f"SELECT * FROM rebuilt {order}")).fetchall()  # noqa: S608
                got = await (await conn.execute(f"SELECT * FROM {table} {order}")).fetchall()  # noqa: S608
        else:
            assert isinstance(store, AsyncSqliteStore)
            got = store.sync.database.query(f"SELECT * FROM {table} {order}")  # noqa: S608
            conn_lite = sqlite3.connect(store.sync.path)
            try:
                conn_lite.execute(f"CREATE TEMP TABLE rebuilt AS SELECT * FROM {table} WHERE 0")  # noqa: S608
                # SQLite rolls up the newest minutes when they close: compare below its watermark.
                rolled = rolled_upto(store.sync.database.query)
                conn_lite.execute(rebuild_sql("temp.rebuilt", step, "ts < ?"), (rolled,))
                want = conn_lite.execute(f"SELECT * FROM temp.rebuilt {order}").fetchall()  # noqa: S608
            finally:
                conn_lite.close()
        out[table] = (list(got), list(want))
    return out


async def _same_rollups(store: AsyncEdgeStore) -> None:
    for got, want in (await _stored_and_rebuilt(store)).values():
        assert len(got) == len(want)
        for row, ref in zip(got, want, strict=True):
            assert tuple(row[:5]) == tuple(ref[:5])  # key and count
            assert tuple(row[6:8]) == tuple(ref[6:8])  # min, max
            assert tuple(row[9:]) == tuple(ref[9:])  # newest time and value
            assert row[5] == pytest.approx(ref[5], rel=1e-9, abs=1e-9)
            assert row[8] == pytest.approx(ref[8], rel=1e-9, abs=1e-6)


def _close(got: Summary, want: Summary) -> None:
    assert (got.count, got.min, got.max, got.last, got.last_at) == (
        want.count,
        want.min,
        want.max,
        want.last,
        want.last_at,
    )
    if want.count:
        assert got.average == pytest.approx(want.average, rel=1e-9, abs=1e-9)
        # Variances from sums of squares share the same cancellation; compare them, not roots.
        assert (got.stddev or 0.0) ** 2 == pytest.approx((want.stddev or 0.0) ** 2, rel=1e-7, abs=1e-6)


async def _raw_summary(
    store: AsyncEdgeStore, object_id: str, metric: str, since: float, until: float
) -> Summary:
    if isinstance(store, PostgresStore):
        return await pg_windows.summary_raw(store._query, object_id, metric, since, until)
    assert isinstance(store, AsyncSqliteStore)
    return windows.summary_raw(store.sync.database.query, object_id, metric, since, until)


async def _client_moments(
    store: AsyncEdgeStore, client: str, since: float, until: float, *, raw: bool
) -> dict[tuple[str, str], Any]:
    if isinstance(store, PostgresStore):
        pg_call = pg_windows.client_moments_raw if raw else pg_windows.client_moments
        return await pg_call(store._query, client, since, until)
    assert isinstance(store, AsyncSqliteStore)
    call = windows.client_moments_raw if raw else windows.client_moments
    return call(store.sync.database.query, client, since, until)


async def _raw_buckets(
    store: AsyncEdgeStore, metric: str, since: float, until: float, step: float, start: float
) -> dict[int, tuple[int, float, float, float]]:
    if isinstance(store, PostgresStore):
        rows = await pg_windows.bucket_rows_raw(
            store._query, _ROLLUP_OBJECTS, metric, since, until, step, start
        )
    else:
        assert isinstance(store, AsyncSqliteStore)
        rows = windows.bucket_rows_raw(
            store.sync.database.query, _ROLLUP_OBJECTS, metric, since, until, step, start
        )
    return {int(b): (int(n), float(total), float(low), float(high)) for b, total, low, high, n in rows}


async def _compare_windows(store: AsyncEdgeStore, edges: list[tuple[float, float]]) -> None:
    for since, until in edges:
        for object_id in _ROLLUP_OBJECTS:
            for metric in _METRICS:
                _close(
                    await store.summary(object_id, metric, since, until),
                    await _raw_summary(store, object_id, metric, since, until),
                )
        for client in ("client_1", "client_2"):
            got = await _client_moments(store, client, since, until, raw=False)
            want = await _client_moments(store, client, since, until, raw=True)
            assert got.keys() == want.keys()
            for key, (count, total, low, high, squares) in got.items():
                assert (count, low, high) == (want[key][0], want[key][2], want[key][3])
                assert total == pytest.approx(want[key][1], rel=1e-9, abs=1e-9)
                assert squares == pytest.approx(want[key][4], rel=1e-9, abs=1e-6)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    batches=st.lists(_batch, min_size=1, max_size=5),
    edges=st.lists(st.tuples(_edge, _edge).map(sorted), min_size=1, max_size=5),
    cut=st.one_of(st.none(), _edge),
)
def test_rollups_answer_as_the_raw_rows_on_both_backends(
    fresh_store: Callable[[], AbstractAsyncContextManager[AsyncEdgeStore]],
    batches: _Batches,
    edges: list[tuple[float, float]],
    cut: float | None,
) -> None:
    """Random series, replays, owner moves and windows: rollups answer as every raw row would.

    The rollups hold exactly what the readings give, before and after a random retention cut.
    """

    async def scenario() -> None:
        async with fresh_store() as store:
            await _fill_batches(store, batches)
            await _same_rollups(store)
            await _compare_windows(store, [(a, b) for a, b in edges])
            if cut is not None:
                await store.prune(cut)
                await _same_rollups(store)
                await _compare_windows(store, [(a, b) for a, b in edges])

    asyncio.run(scenario())


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    batches=st.lists(_batch, min_size=1, max_size=4),
    edges=st.lists(st.tuples(_edge, _edge).map(sorted), min_size=1, max_size=4),
    step=st.sampled_from([60.0, 120.0, 300.0, 900.0, 3600.0, 7200.0, 45.0, 90.5]),
    aligned=st.booleans(),
)
def test_rollup_series_answer_as_the_raw_rows_on_both_backends(
    fresh_store: Callable[[], AbstractAsyncContextManager[AsyncEdgeStore]],
    batches: _Batches,
    edges: list[tuple[float, float]],
    step: float,
    aligned: bool,
) -> None:
    """Down-sampled series on a grid of whole minutes read rollups, with the raw rows' answer."""

    async def scenario() -> None:
        async with fresh_store() as store:
            await _fill_batches(store, batches)
            for since, until in edges:
                start = math.floor(since / step) * step if aligned else since
                for metric in _METRICS:
                    got = await store.bucketed(
                        list(_ROLLUP_OBJECTS), metric, since, until, step, origin=start
                    )
                    want = await _raw_buckets(store, metric, since, until, step, start)
                    assert [b.ts for b in got] == [start + b * step for b in sorted(want)]
                    for bucket, (count, total, low, high) in zip(
                        got, (want[b] for b in sorted(want)), strict=True
                    ):
                        assert (bucket.count, bucket.min, bucket.max) == (count, low, high)
                        assert bucket.average == pytest.approx(total / count, rel=1e-9, abs=1e-9)

    asyncio.run(scenario())


_SCOPES: tuple[frozenset[str] | None, ...] = (
    None,
    frozenset({"client_1"}),
    frozenset({"client_2"}),
    frozenset({"client_1", "client_2"}),
    frozenset(),
)
# (object, owner when the event opened, start offset, whether it has ended)
_anomaly = st.tuples(
    st.sampled_from((*_ROLLUP_OBJECTS, "device_9")),
    st.sampled_from(("client_1", "client_2")),
    st.integers(min_value=0, max_value=_SPAN),
    st.booleans(),
)


async def _compare_answers(store: AsyncEdgeStore, edges: list[tuple[float, float]]) -> None:
    """object_answer and client_answer equal the per-call operations they replace, exactly."""
    for since, until in edges:
        for object_id in (*_ROLLUP_OBJECTS, "device_9"):
            for scope in _SCOPES:
                got = await store.object_answer(object_id, scope, since, until)
                obj = await store.object(object_id, scope)
                if obj is None:
                    assert got is None
                    continue
                assert got is not None
                assert got.object == obj
                assert got.latest == await store.latest_of(object_id)
                assert (got.open_anomalies, got.total_anomalies) == await store.anomaly_counts(object_id)
                for metric in (*_METRICS, "battery_level"):
                    assert got.summaries.get(metric, EMPTY) == await store.summary(
                        object_id, metric, since, until
                    ), (object_id, metric)
        for client in ("client_1", "client_2", "client_3"):
            answer = await store.client_answer(client, since, until)
            assert (answer.per_metric, answer.per_object) == await store.client_summaries(
                client, since, until
            )
            assert answer.objects == await store.objects(frozenset({client}))


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    batches=st.lists(_batch, min_size=0, max_size=4),
    anomalies=st.lists(_anomaly, max_size=6),
    edges=st.lists(st.tuples(_edge, _edge).map(sorted), min_size=1, max_size=4),
    cut=st.one_of(st.none(), _edge),
)
def test_one_answer_per_object_and_client_equals_the_calls_it_replaces(
    fresh_store: Callable[[], AbstractAsyncContextManager[AsyncEdgeStore]],
    batches: _Batches,
    anomalies: list[tuple[str, str, int, bool]],
    edges: list[tuple[float, float]],
    cut: float | None,
) -> None:
    """Random series, owner moves, events, scopes and windows: the combined reads answer exactly
    (to the last bit) as ``object``, ``summary``, ``latest_of``, ``anomaly_counts``,
    ``client_summaries`` and ``objects`` do, also once raw rows are pruned under kept rollups.
    """

    async def scenario() -> None:
        async with fresh_store() as store:
            await _fill_batches(store, batches)
            events = [
                replace(
                    _event(object_id, client, T0 + start, ended=T0 + start + 5 if ended else None),
                    metric=_METRICS[start % 2],
                )
                for object_id, client, start, ended in anomalies
            ]
            await store.record_transitions(events, [], edge_id="edge-test", now=T0)
            await _compare_answers(store, edges)
            if cut is not None:
                await store.prune(cut, rollups_before=cut - 3600)
                await _compare_answers(store, edges)

    asyncio.run(scenario())


def test_one_answer_equals_the_calls_over_an_hour_of_readings(opener: Opener) -> None:
    """Hundreds of readings per piece (sums in the same order to the last bit), several windows."""

    async def scenario(store: AsyncEdgeStore) -> None:
        for object_id, client in (("device_1", "client_1"), ("device_3", "client_2")):
            await store.record_transitions(
                [_event(object_id, client, T0 + 60), _event(object_id, client, T0, ended=T0 + 30)],
                [],
                edge_id="edge-test",
                now=T0,
            )
        edges = [(T0, T0 + 3600), (T0 + 17.5, T0 + 3590.25), (T0 + 601, T0 + 1799), (T0 - 60, T0 + 7200)]
        for since, until in edges:
            for entry in OBJECTS:
                got = await store.object_answer(entry.id, None, since, until)
                assert got is not None
                assert got.summaries == {
                    metric: await store.summary(entry.id, metric, since, until) for metric in got.summaries
                }
                assert got.summaries and all(s.count for s in got.summaries.values())
                assert got.latest == await store.latest_of(entry.id)
                assert (got.open_anomalies, got.total_anomalies) == await store.anomaly_counts(entry.id)
            for client in ("client_1", "client_2"):
                answer = await store.client_answer(client, since, until)
                assert (answer.per_metric, answer.per_object) == await store.client_summaries(
                    client, since, until
                )
                assert answer.objects == await store.objects(frozenset({client}))
        assert await store.object_answer("device_3", frozenset({"client_1"}), T0, T0 + 3600) is None
        assert (await store.object_answer("device_1", None, T0, T0 + 3600)) is not None
        assert (await store.anomaly_counts("device_1")) == (1, 2)

    run(opener, scenario)


def test_a_moved_device_brings_no_rolled_up_history(opener: Opener) -> None:
    """Rollups are keyed by the owner at reading time: the new owner sees only its own hours."""

    async def scenario(store: AsyncEdgeStore) -> None:
        await store.upsert_objects([CatalogueEntry("device_9", "client_1", "sensor")], T0)
        await store.insert_readings(
            [Reading("device_9", "client_1", "temperature", T0 + 5 * i, 20.0) for i in range(1440)]
        )
        await store.upsert_objects([CatalogueEntry("device_9", "client_2", "sensor")], T0 + 7200)
        await store.insert_readings(
            [Reading("device_9", "client_2", "temperature", T0 + 7200 + 5 * i, 30.0) for i in range(720)]
        )
        got = await store.summary("device_9", "temperature", T0, T0 + 3 * 3600)
        assert (got.count, got.min, got.max) == (720, 30.0, 30.0)
        assert (await store.client_summaries("client_1", T0, T0 + 3 * 3600)) == ({}, {})

    run(opener, scenario, fill=False)


def test_the_rollup_migration_back_fills_stored_readings(pg_url: str) -> None:
    """A database at PostgreSQL schema 1 gets rollups of its readings, under their owners."""

    async def scenario(url: str) -> Summary:
        async with await psycopg.AsyncConnection.connect(url) as conn:
            for step in PG_MIGRATIONS[:1]:
                async with conn.transaction():
                    await conn.execute(
                        "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                        "applied_at DOUBLE PRECISION NOT NULL)"
                    )
                    for statement in step.statements:
                        await conn.execute(statement)
                    await conn.execute("INSERT INTO schema_version VALUES (1, 'v1', 0)")
            async with conn.transaction():
                await conn.execute("INSERT INTO objects VALUES ('device_1', 'client_1', 'sensor', 0, 0)")
                for i, value in enumerate((25.0, 26.0, 27.0)):
                    await conn.execute(
                        "INSERT INTO readings VALUES ('device_1', 'temperature', %s, %s, 'client_1')",
                        (T0 + 60 * i, value),
                    )
        store = await open_pg_store(url)
        try:
            rows = await store._query(
                "SELECT client, bucket, n, total, low, high, last_value FROM rollup_hour"
            )
            assert rows == [("client_1", int(T0), 3, 78.0, 25.0, 27.0, 27.0)]
            await _same_rollups(store)
            return await store.summary("device_1", "temperature", T0 - 3600, T0 + 7200)
        finally:
            await store.close()

    with scratch_database() as url:
        got = asyncio.run(scenario(url))
    assert (got.count, got.average, got.last) == (3, 26.0, 27.0)


def test_a_summary_shows_its_statistics_in_order_computed_ones_rounded() -> None:
    """as_json lists STATISTICS in order; average and stddev to 4 decimals, readings as they are."""
    shown = Summary(3, 1.234567, 0.123456789, 2.5, 0.987654321, 1.000001, T0).as_json()
    assert tuple(shown) == STATISTICS
    assert shown == {
        "count": 3,
        "average": 1.2346,
        "min": 0.123456789,
        "max": 2.5,
        "stddev": 0.9877,
        "last": 1.000001,
    }
    assert EMPTY.as_json() == dict.fromkeys(STATISTICS, None) | {"count": 0}
