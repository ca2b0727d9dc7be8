"""The SQLite store: statistics agree with a reference, scopes hold, data survives reopening."""

import random
from pathlib import Path

import pytest

from iotedge.edge.normalise import CatalogueEntry, Reading
from iotedge.edge.stats import summarise
from iotedge.edge.store import AnomalyEvent, EventEnd, Store

T0 = 1_795_953_600.0
OBJECTS = [
    CatalogueEntry("device_1", "client_1", "temperature_sensor"),
    CatalogueEntry("device_2", "client_1", "humidity_sensor"),
    CatalogueEntry("device_3", "client_2", "activity_tracker"),
]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """A store with three objects of two clients and an hour of 5 s readings."""
    store = Store(tmp_path / "edge.sqlite3")
    store.upsert_objects(OBJECTS, T0)
    rng = random.Random(1)
    batch = []
    for i in range(720):
        ts = T0 + 5 * i
        batch.append(Reading("device_1", "client_1", "temperature", ts, round(rng.uniform(20, 30), 2)))
        batch.append(Reading("device_1", "client_1", "battery_level", ts, float(90 - i // 100)))
        batch.append(Reading("device_2", "client_1", "humidity", ts, float(rng.randint(40, 80))))
        batch.append(Reading("device_3", "client_2", "activity_level", ts, float(rng.randint(0, 100))))
    store.insert_readings(batch)
    return store


def _values(store: Store, object_id: str, metric: str, since: float, until: float) -> list[float]:
    return [v for _, v in store.raw_series(object_id, metric, since, until, 100_000)]


@pytest.mark.parametrize(("since", "until"), [(T0, T0 + 3600), (T0 + 600, T0 + 1200), (T0 + 3595, T0 + 3600)])
def test_summary_matches_the_reference(store: Store, since: float, until: float) -> None:
    """SQL statistics equal the pure-Python reference over the same window."""
    values = _values(store, "device_1", "temperature", since, until)
    expected = summarise(values)
    got = store.summary("device_1", "temperature", since, until)
    assert got.count == expected.count
    assert got.average == pytest.approx(expected.average)
    assert got.stddev == pytest.approx(expected.stddev, abs=1e-6)
    assert (got.min, got.max, got.last) == (expected.min, expected.max, expected.last)


def test_empty_window_has_zero_count(store: Store) -> None:
    """A window without readings gives count 0 and nulls."""
    got = store.summary("device_1", "temperature", T0 - 100, T0 - 50)
    assert got.count == 0
    assert got.average is None


def test_client_statistics_never_mix_metrics(store: Store) -> None:
    """Per-client statistics are per metric, each from that metric's readings only."""
    per_metric, per_object = store.client_summaries("client_1", T0, T0 + 3600)
    assert set(per_metric) == {"temperature", "humidity", "battery_level"}
    humidity = summarise(_values(store, "device_2", "humidity", T0, T0 + 3600))
    assert per_metric["humidity"].average == pytest.approx(humidity.average)
    assert per_metric["humidity"].count == 720
    assert set(per_object) == {"device_1", "device_2"}
    assert "activity_level" not in per_metric


def test_duplicates_are_ignored(store: Store) -> None:
    """Re-inserting the same (object, metric, time) stores nothing new."""
    again = [Reading("device_1", "client_1", "temperature", T0, 99.0)]
    assert store.insert_readings(again) == 0
    assert store.summary("device_1", "temperature", T0, T0 + 1).max != 99.0


def test_series_buckets(store: Store) -> None:
    """Down-sampling averages each step; counts add up to the raw count."""
    buckets = store.bucketed(["device_1"], "temperature", T0, T0 + 3600, 600)
    assert len(buckets) == 6
    assert sum(b.count for b in buckets) == 720
    first = summarise(_values(store, "device_1", "temperature", T0, T0 + 600))
    assert buckets[0].average == pytest.approx(first.average)
    assert buckets[0].min == first.min
    assert [b.ts for b in buckets] == sorted(b.ts for b in buckets)


def test_scope_filters_objects_and_latest(store: Store) -> None:
    """A client scope sees only its objects; None sees all; the empty scope sees nothing."""
    assert [o.id for o in store.objects(frozenset({"client_2"}))] == ["device_3"]
    assert len(store.objects(None)) == 3
    assert store.objects(frozenset()) == []
    assert store.object("device_3", frozenset({"client_1"})) is None
    assert {row[1] for row in store.latest(frozenset({"client_1"}))} == {"client_1"}


def test_retention_prunes_old_readings(store: Store) -> None:
    """prune() deletes readings older than the cut-off and nothing newer."""
    removed = store.prune(T0 + 1800)
    assert removed == 4 * 360
    assert store.summary("device_1", "temperature", T0, T0 + 1800).count == 0
    assert store.summary("device_1", "temperature", T0 + 1800, T0 + 3600).count == 360


def test_data_survives_reopening(tmp_path: Path, store: Store) -> None:
    """A closed and reopened store has every committed reading."""
    count = store.count_readings()
    store.close()
    reopened = Store(store.path)
    assert reopened.count_readings() == count == 4 * 720


def test_transitions_write_events_and_outbox_together(store: Store) -> None:
    """Opening and closing an event adds one outbox row each, with an idempotency key."""
    event = AnomalyEvent(
        id=1 << 52 | 7,
        object_id="device_1",
        client="client_1",
        type="temperature_sensor",
        metric="temperature",
        rule="temperature_high",
        severity="warning",
        value=35.0,
        threshold=30.0,
        message="hot",
        started_at=T0,
    )
    [event_id] = store.record_transitions([event], [], edge_id="e1", now=T0)
    store.record_transitions([], [EventEnd(event_id, T0 + 60, 25.0)], edge_id="e1", now=T0 + 60)
    rows = store.database.query("SELECT transition, idempotency_key FROM outbox ORDER BY id")
    assert rows == [("opened", f"e1:{event_id}:opened"), ("resolved", f"e1:{event_id}:resolved")]
    [record] = store.anomalies(frozenset({"client_1"}))
    assert record.ended_at == T0 + 60
    assert store.anomalies(frozenset({"client_2"})) == []
