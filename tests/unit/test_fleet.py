"""The simulator's fleet model: determinism, ranges, history and the anomaly schedule."""

import itertools

import pytest

from iotedge.sim.fleet import ANOMALY_KINDS, Fleet
from iotedge.specs import DEVICE_TYPES, METRIC_ORDER, METRICS

T0 = 1_790_000_000.0  # a fixed moment in 2026
DAY = 86_400


def test_default_fleet_matches_the_course() -> None:
    """Six objects, three clients, two types per client, in the course's order."""
    fleet = Fleet()
    assert [(o.id, o.client, o.type) for o in fleet.objects] == [
        ("device_1", "client_1", "temperature_sensor"),
        ("device_2", "client_1", "humidity_sensor"),
        ("device_3", "client_2", "activity_tracker"),
        ("device_4", "client_2", "temperature_sensor"),
        ("device_5", "client_3", "humidity_sensor"),
        ("device_6", "client_3", "activity_tracker"),
    ]


def test_readings_are_a_pure_function_of_seed_object_and_bucket() -> None:
    """Same seed and bucket give the same values; another seed gives others."""
    a, b, c = Fleet(seed=1), Fleet(seed=1), Fleet(seed=2)
    obj = a.objects[0]
    assert a.reading(obj, T0).metrics == b.reading(obj, T0 + 0.9).metrics
    series_a = [a.normal_value(obj, "temperature", T0 + 5 * i) for i in range(50)]
    series_c = [c.normal_value(obj, "temperature", T0 + 5 * i) for i in range(50)]
    assert series_a != series_c


def test_reading_lists_every_metric_with_null_where_not_applicable() -> None:
    """Every course metric is present; only the type's own are non-null."""
    fleet = Fleet(anomaly_rate=0)
    for obj in fleet.objects:
        metrics = fleet.reading(obj, T0).metrics
        assert list(metrics) == list(METRIC_ORDER)
        applicable = set(DEVICE_TYPES[obj.type].metrics)
        assert {k for k, v in metrics.items() if v is not None} == applicable


@pytest.mark.parametrize("metric", ["temperature", "humidity", "activity_level", "battery_level"])
def test_normal_values_stay_in_the_course_range_for_two_days(metric: str) -> None:
    """Without anomalies, every value over 48 h is within the course's normal range."""
    fleet = Fleet(seed=7, clients=4, anomaly_rate=0)
    spec = METRICS[metric]
    objects = [o for o in fleet.objects if metric in DEVICE_TYPES[o.type].metrics]
    for obj in objects:
        values = [fleet.value(obj, metric, T0 + 300 * i) for i in range(2 * DAY // 300)]
        assert all(v is not None for v in values)
        numbers = [float(v) for v in values if v is not None]
        assert spec.normal_low <= min(numbers)
        assert max(numbers) <= spec.normal_high
        if spec.is_integer:
            assert all(isinstance(v, int) for v in values)
        assert len(set(numbers)) > 5, "a realistic signal varies"


def test_temperature_has_a_daily_cycle() -> None:
    """Mean temperature differs between the day's warm and cool halves."""
    fleet = Fleet(anomaly_rate=0)
    obj = fleet.objects[0]
    hourly = [
        sum(float(fleet.normal_value(obj, "temperature", T0 + h * 3600 + m * 60) or 0) for m in range(60))
        / 60
        for h in range(24)
    ]
    assert max(hourly) - min(hourly) > 3.0


def test_battery_drains_then_recharges() -> None:
    """Battery falls most of the time and jumps back up at least once in three days."""
    fleet = Fleet(anomaly_rate=0)
    obj = fleet.objects[0]
    levels = [fleet._battery(obj, T0 + 600 * i) for i in range(3 * DAY // 600)]
    drops = sum(1 for a, b in itertools.pairwise(levels) if b < a)
    rises = sum(1 for a, b in itertools.pairwise(levels) if b > a)
    assert drops > rises > 0
    assert min(levels) >= 25


def test_history_agrees_with_current_readings() -> None:
    """Each history point equals the reading at its timestamp, newest first."""
    fleet = Fleet(anomaly_rate=0.5, anomaly_slot_s=120)
    for obj in fleet.objects:
        points = fleet.history(obj, T0, limit=30)
        assert len(points) == 30
        assert [ts for ts, _ in points] == sorted((ts for ts, _ in points), reverse=True)
        for ts, value in points:
            assert fleet.reading(obj, ts).metrics[obj.primary] == value


def test_anomalies_appear_at_their_scheduled_times() -> None:
    """During each listed event the values show it; just outside, they are normal."""
    fleet = Fleet(seed=3, anomaly_rate=0.5, anomaly_slot_s=300)
    events = list(fleet.anomalies(T0, T0 + 6 * 3600))
    assert {e.kind for e in events} == set(ANOMALY_KINDS)
    for event in events:
        obj = fleet.by_id[event.object_id]
        inside = fleet.value(obj, event.metric, event.start)
        spec = METRICS[event.metric]
        if event.kind == "missing":
            assert inside is None
        elif event.kind == "stuck":
            values = {fleet.value(obj, event.metric, t) for t in range(int(event.start), int(event.end), 5)}
            assert len(values) == 1
        elif event.kind == "battery_low":
            assert inside is not None and inside < 15
        else:
            assert (inside is not None and not spec.normal_low <= inside <= spec.normal_high) or (
                event.metric == "activity_level" and inside is not None and inside >= 97
            )
        assert fleet.value(obj, event.metric, event.end) == fleet.normal_value(obj, event.metric, event.end)
        assert fleet.anomaly_at(obj, event.start - fleet.interval_s) is None


def test_anomaly_rate_zero_means_none() -> None:
    """With rate 0 nothing is injected."""
    fleet = Fleet(anomaly_rate=0)
    assert list(fleet.anomalies(T0, T0 + DAY)) == []


def test_large_fleet_builds_quickly_and_names_clients() -> None:
    """10,000 objects: 1,000 clients of ten, ids continuous."""
    fleet = Fleet(clients=1000, objects_per_client=10)
    assert len(fleet.objects) == 10_000
    assert fleet.objects[-1].id == "device_10000"
    assert len(fleet.by_client["client_1000"]) == 10
