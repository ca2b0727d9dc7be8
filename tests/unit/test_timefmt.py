"""``iso_utc`` writes exactly what ``datetime.fromtimestamp(ts, UTC).isoformat()`` writes."""

import math
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings, strategies as st

from iotedge.edge.timefmt import MAX_INSTANT, iso_utc


def _reference(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


@settings(max_examples=2000)
@given(st.floats(min_value=0, max_value=MAX_INSTANT, exclude_max=True))
def test_any_instant(ts: float) -> None:
    assert iso_utc(ts) == _reference(ts)


@given(st.integers(min_value=0, max_value=int(MAX_INSTANT) - 1))
def test_exact_seconds_have_no_fraction(second: int) -> None:
    assert iso_utc(float(second)) == _reference(float(second)) == iso_utc(second)
    assert "." not in iso_utc(float(second))


@settings(max_examples=2000)
@given(
    st.integers(min_value=0, max_value=int(MAX_INSTANT) - 2),
    st.integers(min_value=0, max_value=999_999),
    st.integers(min_value=-4, max_value=4),
)
def test_near_half_a_microsecond(second: int, micros: int, steps: int) -> None:
    """Fractions at and beside x.5 µs, where rounding half to even (and carrying into the
    next second at 999999.5 µs) decides the digits."""
    ts = second + (micros + 0.5) / 1e6
    for _ in range(abs(steps)):
        ts = math.nextafter(ts, math.inf if steps > 0 else -math.inf)
    assert iso_utc(ts) == _reference(ts)


@pytest.mark.parametrize(
    "ts",
    [
        0.0,
        0.5e-6,
        1.5e-6,
        2.5e-6,
        0.9999995,
        0.99999949,
        1_790_000_000.0,
        1_790_000_000.0000005,
        1_790_000_000.9999995,
        1_790_000_000.25,
        MAX_INSTANT - 1e-3,
    ],
)
def test_edges(ts: float) -> None:
    assert iso_utc(ts) == _reference(ts)


@pytest.mark.parametrize("ts", [-1.5, -0.0000005, MAX_INSTANT, MAX_INSTANT + 1.5])
def test_outside_the_accepted_range_as_datetime(ts: float) -> None:
    assert iso_utc(ts) == _reference(ts)


@pytest.mark.parametrize("ts", [math.nan, math.inf, -math.inf, 1e300])
def test_impossible_instants_fail_as_datetime(ts: float) -> None:
    with pytest.raises((ValueError, OverflowError)) as ours:
        iso_utc(ts)
    with pytest.raises((ValueError, OverflowError)) as theirs:
        _reference(ts)
    assert type(ours.value) is type(theirs.value)
