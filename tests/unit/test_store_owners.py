"""History stays with the client that owned a device when it was recorded (finding 4)."""

from pathlib import Path

import pytest

from iotedge.edge.normalise import CatalogueEntry, Reading
from iotedge.edge.store import AnomalyEvent, Store, new_event_id

T0 = 1_795_953_600.0
WINDOW = (T0 - 1, T0 + 3600)


def _readings(client: str, start: float, values: list[float]) -> list[Reading]:
    return [Reading("device_3", client, "temperature", start + 5 * i, v) for i, v in enumerate(values)]


def _event(client: str, at: float) -> AnomalyEvent:
    return AnomalyEvent(
        id=new_event_id(),
        object_id="device_3",
        client=client,
        type="temperature_sensor",
        metric="temperature",
        rule="temperature_high",
        severity="warning",
        value=35.0,
        threshold=30.0,
        message="hot",
        started_at=at,
        ended_at=at + 5,
    )


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """device_3 belongs to client_2, which records readings and one event."""
    store = Store(tmp_path / "s.sqlite3")
    store.upsert_objects([CatalogueEntry("device_3", "client_2", "temperature_sensor")], T0)
    store.insert_readings(_readings("client_2", T0, [21.0, 22.0, 23.0]))
    store.record_transitions([_event("client_2", T0)], [], edge_id="e", now=T0)
    return store


def _move(store: Store, to: str, at: float) -> None:
    store.upsert_objects([CatalogueEntry("device_3", to, "temperature_sensor")], at)


def test_the_new_owner_sees_none_of_the_old_owners_history(store: Store) -> None:
    """After a move to client_1, its statistics, series, latest and counts start empty."""
    _move(store, "client_1", T0 + 100)
    assert store.summary("device_3", "temperature", *WINDOW).count == 0
    assert store.raw_series("device_3", "temperature", *WINDOW, 100) == []
    assert store.latest_of("device_3") == {}
    assert store.latest(frozenset({"client_1"})) == []
    assert store.anomaly_counts("device_3") == (0, 0)
    assert store.client_summaries("client_1", *WINDOW) == ({}, {})
    assert store.anomalies(frozenset({"client_1"})) == []
    store.insert_readings(_readings("client_1", T0 + 200, [30.0]))
    got = store.summary("device_3", "temperature", *WINDOW)
    assert (got.count, got.last) == (1, 30.0)


def test_the_old_owner_keeps_its_events_and_gets_its_readings_back(store: Store) -> None:
    """client_2 keeps its events; moved back, it sees its own readings, never client_1's."""
    _move(store, "client_1", T0 + 100)
    store.insert_readings(_readings("client_1", T0 + 200, [30.0, 31.0]))
    assert len(store.anomalies(frozenset({"client_2"}))) == 1
    _move(store, "client_2", T0 + 300)
    values = [v for _, v in store.raw_series("device_3", "temperature", *WINDOW, 100)]
    assert values == [21.0, 22.0, 23.0]
    assert store.summary("device_3", "temperature", *WINDOW).count == 3
    assert store.bucketed(["device_3"], "temperature", *WINDOW, 3600)[0].count == 3
    assert store.anomaly_counts("device_3") == (0, 1)
    per_metric, _ = store.client_summaries("client_2", *WINDOW)
    assert per_metric["temperature"].max == 23.0


def test_event_ids_are_random_and_reveal_no_count() -> None:
    """Ids are drawn at random in [2**52, 2**53): exact in JavaScript, no sequence to read."""
    ids = [new_event_id() for _ in range(1000)]
    assert len(set(ids)) == len(ids)
    assert all(1 << 52 <= i < 1 << 53 for i in ids)
    assert sorted(ids) != ids
