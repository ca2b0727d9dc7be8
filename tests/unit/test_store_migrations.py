"""Schema migrations: a store of the previous release upgrades in place; versions only go forward."""

import sqlite3
from pathlib import Path

import pytest

from iotedge.edge.store import SCHEMA_VERSION, Store, migrate, schema_version
from iotedge.errors import StoreError

FIXTURE = Path(__file__).parents[1] / "fixtures" / "store_v0.sql"
T0 = 1_795_953_600.0


def _old_store(path: Path) -> Path:
    """The previous release's store file, rebuilt from its SQL dump."""
    conn = sqlite3.connect(path)
    conn.executescript(FIXTURE.read_text())
    conn.close()
    return path


def test_a_store_of_the_previous_release_upgrades_and_keeps_its_data(tmp_path: Path) -> None:
    """Opening the old file applies every step, and readings, events and the outbox survive."""
    path = _old_store(tmp_path / "old.sqlite3")
    store = Store(path)
    assert schema_version(sqlite3.connect(path)) == SCHEMA_VERSION
    assert store.count_readings() == 6
    # Readings got the owner the catalogue names (step 2's backfill), so they stay visible.
    assert store.summary("device_1", "temperature", T0, T0 + 60).count == 3
    assert {row[1] for row in store.latest(None)} == {"client_1", "client_2"}
    [event] = store.anomalies(frozenset({"client_1"}))
    assert (event.id, event.rule, event.ended_at) == (1, "temperature_high", None)
    keys = [row[0] for row in store.database.query("SELECT idempotency_key FROM outbox")]
    assert keys == ["edge-old:1:opened"]  # notification keys of old events never change
    store.close()


def test_an_old_open_event_closes_after_the_upgrade(tmp_path: Path) -> None:
    """An event opened by the old release resolves under the new one with the same key prefix."""
    from iotedge.edge.store import EventEnd

    store = Store(_old_store(tmp_path / "old.sqlite3"))
    store.record_transitions([], [EventEnd(1, T0 + 60, 25.0)], edge_id="edge-old", now=T0 + 60)
    keys = [row[0] for row in store.database.query("SELECT idempotency_key FROM outbox ORDER BY id")]
    assert keys == ["edge-old:1:opened", "edge-old:1:resolved"]
    store.close()


def test_migrating_twice_changes_nothing(tmp_path: Path) -> None:
    """Every step is applied once; reopening applies none."""
    path = tmp_path / "s.sqlite3"
    Store(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn) == []
    steps = [row[0] for row in conn.execute("SELECT version FROM schema_version ORDER BY version")]
    assert steps == list(range(1, SCHEMA_VERSION + 1))


def test_a_store_from_a_newer_release_is_refused(tmp_path: Path) -> None:
    """A schema version above this release's is one clear error, never a guess."""
    path = tmp_path / "s.sqlite3"
    Store(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("INSERT INTO schema_version VALUES (?, 'future', 0)", (SCHEMA_VERSION + 1,))
    conn.close()
    with pytest.raises(StoreError, match="newer than this release"):
        Store(path)
