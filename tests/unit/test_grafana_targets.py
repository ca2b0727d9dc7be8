"""The Grafana target grammar, multi-value parameters, filters, windows and pooled statistics."""

import math

import pytest

from iotedge.edge.grafana.models import AdhocFilterIn
from iotedge.edge.grafana.query import compile_filters
from iotedge.edge.grafana.targets import SeriesTarget, TableTarget, parse_target
from iotedge.edge.reads import MAX_BUCKETS, SeriesData, combine, split_values, window_between
from iotedge.edge.stats import summarise
from iotedge.edge.store import Bucket, Summary
from iotedge.errors import BadRequest


@pytest.mark.parametrize(
    ("text", "payload", "expected"),
    [
        pytest.param(
            "device_1.temperature", None, SeriesTarget(("device_1",), ("temperature",)), id="object-metric"
        ),
        pytest.param(
            "client_1.humidity.max",
            None,
            SeriesTarget(("client_1",), ("humidity",), "max", True),
            id="client-agg",
        ),
        pytest.param("device_1", None, SeriesTarget(("device_1",), None), id="all-metrics"),
        pytest.param("*.battery_level", None, SeriesTarget(None, ("battery_level",)), id="every-object"),
        pytest.param(
            "(device_1|device\\.2).temperature",
            None,
            SeriesTarget(("device_1", "device.2"), ("temperature",)),
            id="regex-list-escaped-dot",
        ),
        pytest.param(
            "{device_1,device_4}.(temperature|battery_level).average",
            None,
            SeriesTarget(("device_1", "device_4"), ("temperature", "battery_level"), "avg", True),
            id="glob-list-metric-list",
        ),
        pytest.param(
            "series",
            {"client_id": "client_2", "metric": "humidity", "agg": "min"},
            SeriesTarget(("client_2",), ("humidity",), "min", True),
            id="simpod-builder",
        ),
        pytest.param(
            "processed_data?object_id=device_1",
            None,
            TableTarget("processed_data", {"object_id": "device_1"}),
            id="course-table",
        ),
        pytest.param(
            "/client_statistics",
            '{"client_id": ["client_1", "client_2"], "window": 5}',
            TableTarget("client_statistics", {"client_id": "client_1,client_2", "window": "5"}),
            id="payload-json-text-list",
        ),
        pytest.param(
            "device_1.temperature.median",
            None,
            SeriesTarget(("device_1.temperature.median",), None),
            id="unknown-agg-is-part-of-the-subject",
        ),
        pytest.param("unknown?x=1", None, None, id="unknown-table"),
        pytest.param("", None, None, id="empty"),
        pytest.param("series", {"metric": "humidity"}, None, id="builder-without-subject"),
    ],
)
def test_parse_target(text: str, payload: object, expected: object) -> None:
    """Targets users type (and simPod payloads) parse to what they mean."""
    assert parse_target(text, payload) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a", ("a",)),
        ("a,b,a", ("a", "b")),
        ("(a|b\\|c)", ("a", "b|c")),
        ("{a,b}", ("a", "b")),
        ('["a", "b"]', ("a", "b")),
        ("*", None),
        ("$__all", None),
        ("", None),
        (None, None),
    ],
)
def test_split_values(text: str | None, expected: tuple[str, ...] | None) -> None:
    """Grafana's multi-value formats (csv, regex, glob, json) and 'all' spellings."""
    assert split_values(text) == expected


def test_series_names_follow_the_grammar() -> None:
    """A series is named like the target that asked for it."""
    assert SeriesTarget(None, None).name("device_1", "temperature") == "device_1.temperature"
    assert SeriesTarget(None, None, "max", True).name("client_1", "humidity") == "client_1.humidity.max"


def test_non_finite_values_become_gaps() -> None:
    """An infinite bucket value is a null datapoint, never NaN/inf in JSON."""
    buckets = [Bucket(100.0, math.inf, 1.0, 2.0, 2), Bucket(110.0, 1.5, 1.0, 2.0, 2)]
    data = SeriesData("x", "temperature", "c", "o", "avg", buckets)
    window = window_between(95.0, 120.0, interval_ms=10_000)
    assert data.datapoints(window) == [(None, 100_000), (1.5, 110_000)]
    assert SeriesData("x", "temperature", "c", "o", "count", buckets).datapoints(window)[0] == (2, 100_000)


def test_windows_honour_interval_and_max_points() -> None:
    """The step is the largest of intervalMs, span/maxDataPoints and span/MAX_BUCKETS."""
    assert window_between(0.0, 3600.0, interval_ms=30_000).step == 30.0
    assert window_between(0.0, 3600.0, interval_ms=1, max_points=100).step == 36.0
    assert window_between(0.0, 86400.0 * 30).step == pytest.approx(86400 * 30 / MAX_BUCKETS, abs=0.001)
    assert window_between(0.0, 1.0).step == 0.001


def test_filters_compile_and_reject_bad_input() -> None:
    """Known operators compile; unknown keys are ignored; bad operators or regexes are 422s."""
    filters = compile_filters(
        [
            AdhocFilterIn(key="object_id", operator="=~", value="device_[12]"),
            AdhocFilterIn(key="colour", operator="=", value="red"),
            AdhocFilterIn(key="client", operator="!=|", values=["client_3"]),
        ]
    )
    assert [f.key for f in filters] == ["object", "client"]
    assert filters[0].matches("device_1") and not filters[0].matches("device_10")
    assert filters[1].matches("client_1") and not filters[1].matches("client_3")
    with pytest.raises(BadRequest):
        compile_filters([AdhocFilterIn(key="object", operator="<>", value="x")])
    with pytest.raises(BadRequest):
        compile_filters([AdhocFilterIn(key="object", operator="=~", value="(")])


def _summary(values: list[float], last_at: float) -> Summary:
    s = summarise(values)
    return Summary(s.count, s.average, s.min, s.max, s.stddev, s.last, last_at)


def test_pooled_statistics_equal_statistics_of_the_union() -> None:
    """combine() gives the count, mean, min, max, population stddev and last of all values."""
    first, second = [20.5, 21.0, 23.25], [19.0, 30.5]
    pooled = combine(
        [_summary(first, 10.0), _summary(second, 20.0), Summary(0, None, None, None, None, None, None)]
    )
    union = summarise(first + second)
    assert pooled.count == union.count
    assert pooled.average == pytest.approx(union.average)
    assert pooled.stddev == pytest.approx(union.stddev)
    assert (pooled.min, pooled.max, pooled.last) == (union.min, union.max, 30.5)
    assert combine([]).count == 0
