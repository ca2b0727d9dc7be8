"""The per-request budget of POST /query: limits named in the 422, cost in requests."""

import pytest

from iotedge.edge.reads import QueryBudget
from iotedge.errors import BadRequest


def test_series_over_the_limit_are_refused_before_anything_is_spent() -> None:
    """Planning past the series limit raises, naming it, and costs nothing."""
    budget = QueryBudget(series=10)
    budget.plan_series(6)
    with pytest.raises(BadRequest, match="limit 'series'"):
        budget.plan_series(5)
    assert budget.series_spent == 6
    assert budget.cost == pytest.approx(1.6)


def test_points_and_response_size_are_capped() -> None:
    """Points are counted as read; the rendered size is checked at the end."""
    budget = QueryBudget(points=1000, response_bytes=100)
    budget.spend_points(1000, readings=50_000)
    assert budget.cost == pytest.approx(1 + 0.5 + 1)
    with pytest.raises(BadRequest, match="limit 'points'") as caught:
        budget.spend_points(1)
    assert caught.value.parameter == "maxDataPoints" and caught.value.location == "body"
    budget.check_response(100)
    with pytest.raises(BadRequest, match="limit 'response_bytes'"):
        budget.check_response(101)
