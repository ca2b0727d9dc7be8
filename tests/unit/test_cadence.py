"""A device's reporting cadence: the median gap of its own reading times."""

import pytest

from iotedge.edge.cadence import Cadence


@pytest.mark.parametrize(
    ("times", "period"),
    [
        pytest.param([], None, id="nothing-seen"),
        pytest.param([10.0], None, id="one-reading"),
        pytest.param([0, 5, 10, 15], 5.0, id="steady-5s"),
        pytest.param([0, 5, 10, 20, 25, 30], 5.0, id="one-missed-report"),
        pytest.param([0, 5, 5, 5, 10], 5.0, id="repeats-ignored"),
        pytest.param([15, 0, 10, 5], 5.0, id="out-of-order-start"),
    ],
)
def test_period(times: list[float], period: float | None) -> None:
    """The period is the median gap; repeated or older times change nothing."""
    assert Cadence(times).period == period


@pytest.mark.parametrize(
    ("times", "poll", "limit"),
    [
        pytest.param([0, 5, 10], 1.0, 3 * 5 + 1, id="slow-device-fast-poll"),
        pytest.param([0, 1, 2], 5.0, 3 * 5 + 5, id="fast-device-slow-poll"),
        pytest.param([], 5.0, 3 * 60 + 5, id="unknown-cadence-assumes-a-minute"),
        pytest.param([0], 120.0, 3 * 120 + 120, id="unknown-cadence-slower-poll"),
    ],
)
def test_silence_limit(times: list[float], poll: float, limit: float) -> None:
    """Offline after 3 periods (never shorter than the poll interval) plus one poll of slack."""
    assert Cadence(times).silence_limit(intervals=3, poll_interval=poll) == limit
