"""Ad-hoc filter regexes run on RE2: linear time, bounded length, refused syntax named in a 422."""

import time

import pytest

from iotedge.edge.grafana.models import AdhocFilterIn
from iotedge.edge.grafana.patterns import MAX_PATTERN, compile_pattern
from iotedge.edge.grafana.query import compile_filters
from iotedge.errors import BadRequest

CRAFTED = r"[a-z]{2}(\w|[a-z_]|.)*X"
"""The pattern of issue 13 finding 1: seconds of backtracking in Python's re on a type name."""


def test_crafted_pattern_matches_in_linear_time() -> None:
    """The backtracking bomb answers at once, even on a value far longer than any tag."""
    pattern = compile_pattern(CRAFTED, "adhocFilters[0].value")
    started = time.perf_counter()
    for value in ("temperature_sensor", "humidity_sensor" * 100, "a" * 2000):
        assert not pattern.fullmatch(value)
    assert time.perf_counter() - started < 1.0  # Python's re: > 5 s on the first value alone
    assert pattern.fullmatch("temperature_sensorX")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        pytest.param(r"(a)\1", "invalid escape", id="backreference"),
        pytest.param(r"(?=dev)device_1", "perl operator", id="lookahead"),
        pytest.param("(", "missing", id="unbalanced"),
        pytest.param("a{1001}", "repetition", id="huge-repeat"),
        pytest.param("x" * (MAX_PATTERN + 1), "longer than", id="too-long"),
    ],
)
def test_refused_patterns_name_the_filter(text: str, why: str) -> None:
    """Syntax RE2 refuses, or an over-long pattern, is a BadRequest naming the filter's field."""
    with pytest.raises(BadRequest) as caught:
        compile_filters(
            [
                AdhocFilterIn(key="client", value="client_1"),
                AdhocFilterIn(key="type", operator="=~", value=text),
            ],
            "filters",
        )
    assert caught.value.parameter == "filters[1].value"
    assert caught.value.location == "body"
    assert why in caught.value.message


def test_regex_operators_match_whole_values() -> None:
    """=~ and !~ keep their meaning (whole-value match) on the new engine."""
    keep, drop = compile_filters(
        [
            AdhocFilterIn(key="object", operator="=~", value="device_[12]"),
            AdhocFilterIn(key="object", operator="!~", value="(?i)DEVICE_2"),
        ]
    )
    assert keep.matches("device_1") and not keep.matches("device_10")
    assert drop.matches("device_1") and not drop.matches("device_2")
