"""Window statistics: the ``Summary`` and ``Bucket`` types and how partial ones pool.

Pure (no database): the backends turn their SQL rows into these, and the API, Grafana and
the rules pool per-object summaries with the same :func:`pool`.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["EMPTY", "STATISTICS", "Bucket", "Summary", "from_moments", "pool"]

STATISTICS = ("count", "average", "min", "max", "stddev", "last")
"""The fields of :class:`Summary` the API shows, in its order (boundary models derive from it)."""


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


@dataclass(frozen=True, slots=True)
class Summary:
    """Window statistics of one metric (population standard deviation).

    ``last_at`` is the time of ``last`` (epoch seconds), None when unknown.
    """

    count: int
    average: float | None
    min: float | None
    max: float | None
    stddev: float | None
    last: float | None
    last_at: float | None = None

    def as_json(self) -> dict[str, float | int | None]:
        """The API's ``statistics`` object (the fields of :data:`STATISTICS`, in its order).

        average and stddev are computed, so shown to 4 decimals; the others are readings as stored.
        """
        return {
            "count": self.count,
            "average": _round(self.average),
            "min": self.min,
            "max": self.max,
            "stddev": _round(self.stddev),
            "last": self.last,
        }


EMPTY = Summary(0, None, None, None, None, None, None)
"""The summary of no readings."""


@dataclass(frozen=True, slots=True)
class Bucket:
    """One step of a down-sampled series; ``ts`` is the bucket start (epoch seconds)."""

    ts: float
    average: float
    min: float
    max: float
    count: int


def clamped_mean(total: float, count: int, low: float, high: float) -> float:
    """total / count, kept within [low, high]: summing floats can overshoot by an ulp."""
    return min(max(total / count, low), high)


def from_moments(
    count: int,
    total: float,
    low: float | None,
    high: float | None,
    squares: float,
    last: tuple[float, float | None] | None,
) -> Summary:
    """A summary from SQL aggregates: COUNT, SUM, MIN, MAX, SUM of squares, and (ts, value) of the last."""
    if not count or low is None or high is None:
        return EMPTY
    mean = clamped_mean(total, count, low, high)
    variance = max(0.0, squares / count - mean * mean)
    return Summary(
        count=count,
        average=mean,
        min=low,
        max=high,
        stddev=math.sqrt(variance),
        last=last[1] if last else None,
        last_at=last[0] if last else None,
    )


def pool(parts: Sequence[Summary]) -> Summary:
    """One summary of the union of the readings ``parts`` summarise (exact pooled variance).

    ``last`` is the newest part's (by ``last_at``).
    """
    parts = [p for p in parts if p.count and p.average is not None]
    if not parts:
        return EMPTY
    count = sum(p.count for p in parts)
    low = min(p.min for p in parts if p.min is not None)
    high = max(p.max for p in parts if p.max is not None)
    total = sum(p.count * (p.average or 0.0) for p in parts)
    squares = sum(p.count * ((p.stddev or 0.0) ** 2 + (p.average or 0.0) ** 2) for p in parts)
    newest = max((p for p in parts if p.last_at is not None), key=lambda p: p.last_at or 0.0, default=None)
    return from_moments(
        count, total, low, high, squares, (newest.last_at or 0.0, newest.last or 0.0) if newest else None
    )
