"""The normaliser: every accepted payload shape, and every rejection reason."""

import json
from pathlib import Path
from typing import Any

import pytest

from iotedge.edge.normalise import (
    CatalogueEntry,
    normalise_catalogue,
    normalise_data,
    normalise_history,
    parse_timestamp,
)

FIXTURES = Path(__file__).parent.parent / "fixtures"
NOON = 1_795_953_600.0  # 2026-11-29T12:00:00Z


def _fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def test_course_shape_gives_applicable_metrics_only() -> None:
    """The course's reading yields temperature and battery; nulls are skipped, not rejected."""
    result = normalise_data(_fixture("course_reading.json"))
    assert result.rejected == {}
    assert {(r.metric, r.value) for r in result.readings} == {("temperature", 23.71), ("battery_level", 87.0)}
    assert result.readings[0].ts == pytest.approx(NOON + 5.123456)


def test_measurements_list_of_the_course_example() -> None:
    """The example code's ``measurements`` list becomes primary-metric readings, offsets honoured."""
    result = normalise_data(_fixture("course_example_measurements.json"))
    assert [(r.metric, r.ts, r.value) for r in result.readings] == [
        ("humidity", NOON, 55.0),
        ("humidity", NOON + 60, 56.5),
        ("humidity", NOON + 120, 57.0),
    ]


def test_history_shape() -> None:
    """History points become readings; a null value is skipped."""
    result = normalise_history(_fixture("course_history.json"))
    assert [r.value for r in result.readings] == [40.0, 41.0]
    assert {r.metric for r in result.readings} == {"activity_level"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("2026-11-29T12:00:00", NOON, id="naive-is-utc"),
        pytest.param("2026-11-29T12:00:00.5", NOON + 0.5, id="fraction"),
        pytest.param("2026-11-29T13:00:00+01:00", NOON, id="offset"),
        pytest.param("2026-11-29T12:00:00Z", NOON, id="zulu"),
        pytest.param("yesterday", None, id="words"),
        pytest.param(1795953600, None, id="number"),
        pytest.param("", None, id="empty"),
    ],
)
def test_timestamps(text: Any, expected: float | None) -> None:
    """Timestamps with or without offset and fraction parse; anything else is None."""
    assert parse_timestamp(text) == expected


def _reading(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "device_1",
        "client": "client_1",
        "type": "temperature_sensor",
        "metrics": {"temperature": 21.5, "battery_level": 50},
        "timestamp": "2026-11-29T12:00:00",
    }
    body.update(changes)
    return body


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        pytest.param([1, 2], "not_an_object", id="list"),
        pytest.param("<html>", "not_an_object", id="string"),
        pytest.param({"id": "device_1"}, "missing_field", id="partial"),
        pytest.param(_reading(id=17), "wrong_type", id="id-number"),
        pytest.param(_reading(type="toaster"), "unknown_type", id="unknown-type"),
        pytest.param(_reading(timestamp=1234), "bad_timestamp", id="timestamp-number"),
        pytest.param(_reading(metrics={"temperature": "hot"}), "wrong_type", id="value-string"),
        pytest.param(_reading(metrics={"temperature": True}), "wrong_type", id="value-bool"),
        pytest.param(_reading(metrics={"temperature": float("nan")}), "non_finite", id="nan"),
        pytest.param(_reading(metrics={"temperature": float("inf")}), "non_finite", id="inf"),
        pytest.param(_reading(metrics={"temperature": 500.0}), "out_of_range", id="too-hot"),
        pytest.param(_reading(metrics={"battery_level": -3}), "out_of_range", id="negative-battery"),
        pytest.param(_reading(metrics=[1, 2]), "wrong_type", id="metrics-list"),
    ],
)
def test_rejections_are_counted_by_reason(payload: Any, reason: str) -> None:
    """Malformed payloads are rejected with a reason, never raised, never stored."""
    result = normalise_data(payload)
    assert result.rejected.get(reason, 0) >= 1
    assert all(r.metric != "temperature" or r.value < 100 for r in result.readings)


def test_expected_entry_fills_header_and_catches_mismatch() -> None:
    """With the catalogue entry, a headerless reading is accepted and a foreign one rejected."""
    entry = CatalogueEntry("device_1", "client_1", "temperature_sensor")
    headerless = {"metrics": {"temperature": 22.0}, "timestamp": "2026-11-29T12:00:00"}
    assert len(normalise_data(headerless, entry).readings) == 1
    foreign = _reading(id="device_9")
    assert normalise_data(foreign, entry).rejected == {"id_mismatch": 1}


def test_catalogue_skips_bad_entries_and_duplicates() -> None:
    """Valid catalogue entries are kept once; bad ones are counted."""
    payload = [
        {"id": "device_1", "client": "client_1", "type": "temperature_sensor"},
        {"id": "device_1", "client": "client_1", "type": "temperature_sensor"},
        {"id": "device_2", "client": "client_1"},
        "junk",
    ]
    entries, rejected = normalise_catalogue(payload)
    assert [e.id for e in entries] == ["device_1"]
    assert rejected == {"missing_field": 1, "not_an_object": 1}
    assert normalise_catalogue({"objects": []}) == ([], {"not_an_object": 1})
