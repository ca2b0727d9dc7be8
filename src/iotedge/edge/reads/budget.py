"""The cost budget of one ``POST /query``: series, points and response size, and what it cost.

A request may name few targets and still ask for a lot (``*`` names every object and
metric), so the count of requests is not a measure of work. Each request gets a budget:
the series it names are counted before any is read, the points as they are read, and the
response bytes once rendered. Going over is a 422 naming the limit (the caller can narrow
the query), and what the request cost is charged to the key's rate budget, in requests.
"""

from dataclasses import dataclass

from iotedge.errors import BadRequest

__all__ = ["MAX_POINTS", "MAX_RESPONSE_BYTES", "MAX_SERIES_PER_REQUEST", "MAX_TARGETS", "QueryBudget"]

MAX_TARGETS = 100
"""Query rows in one request (Grafana sends one per row of a panel)."""

MAX_SERIES_PER_REQUEST = 500
"""Series all targets of one request name together."""

MAX_POINTS = 200_000
"""Datapoints plus table rows one request returns."""

MAX_RESPONSE_BYTES = 8 * 1024 * 1024
"""Largest JSON answer of one request."""

_SERIES_PER_REQUEST_UNIT = 10  # cost in requests: a series read ~ a tenth of a simple request
_POINTS_PER_REQUEST_UNIT = 2_000
_READINGS_PER_REQUEST_UNIT = 50_000


@dataclass(kw_only=True)
class QueryBudget:
    """Limits of one request and what it has spent so far.

    Args:
        series: most series the request may name.
        points: most datapoints and table rows it may return.
        response_bytes: largest answer in bytes.
        names: the request fields a 422 names: what chooses the series, what sets the points.
        location: where those fields are (``body`` for ``POST /query``, ``query`` for REST).
    """

    names: tuple[str, str] = ("targets", "maxDataPoints")
    location: str = "body"
    series: int = MAX_SERIES_PER_REQUEST
    points: int = MAX_POINTS
    response_bytes: int = MAX_RESPONSE_BYTES
    series_spent: int = 0
    points_spent: int = 0
    readings_spent: int = 0

    def plan_series(self, count: int) -> None:
        """Count series about to be read.

        Raises:
            BadRequest: the request names more than ``series`` series.
        """
        if self.series_spent + count > self.series:  # refused before any is read: nothing spent
            raise BadRequest(
                self.names[0],
                f"the request names more than {self.series} series (limit 'series'); narrow "
                "it (fewer targets, objects or metrics, or ad-hoc filters)",
                location=self.location,
            )
        self.series_spent += count

    def spend_points(self, points: int, readings: int = 0) -> None:
        """Count points (and the readings they summarise) once read.

        Raises:
            BadRequest: the request returns more than ``points`` points.
        """
        self.points_spent += points
        self.readings_spent += readings
        if self.points_spent > self.points:
            raise BadRequest(
                self.names[1],
                f"the request returns more than {self.points} points (limit 'points'); ask "
                "for fewer points per series, larger buckets or a shorter range",
                location=self.location,
            )

    def check_response(self, size: int) -> None:
        """Check the rendered answer's size.

        Raises:
            BadRequest: the answer is larger than ``response_bytes``.
        """
        if size > self.response_bytes:
            raise BadRequest(
                self.names[0],
                f"the answer would be {size} bytes, more than {self.response_bytes} "
                "(limit 'response_bytes'); ask for fewer series or points",
                location=self.location,
            )

    @property
    def cost(self) -> float:
        """What the request cost, in simple requests (at least 1)."""
        return (
            1.0
            + self.series_spent / _SERIES_PER_REQUEST_UNIT
            + self.points_spent / _POINTS_PER_REQUEST_UNIT
            + self.readings_spent / _READINGS_PER_REQUEST_UNIT
        )
