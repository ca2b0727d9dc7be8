"""A read window: [since, until) in epoch seconds and the size of its buckets."""

import math
from dataclasses import dataclass

__all__ = ["MAX_BUCKETS", "Window", "window_between"]

MAX_BUCKETS = 10_000
"""Most points one series may have, whatever the caller asks for."""


@dataclass(frozen=True, slots=True)
class Window:
    """A query window [since, until) in epoch seconds and its bucket size."""

    since: float
    until: float
    step: float

    @property
    def origin(self) -> float:
        """Start of the bucket grid: a multiple of the step, so refreshes keep the grid."""
        return math.floor(self.since / self.step) * self.step


def window_between(
    since: float, until: float, *, interval_ms: float | None = None, max_points: int | None = None
) -> Window:
    """A window whose step honours ``interval_ms`` and ``max_points`` (and MAX_BUCKETS)."""
    span = until - since
    step = max(
        (interval_ms or 0) / 1000,
        span / max_points if max_points else 0.0,
        span / MAX_BUCKETS,
        0.001,
    )
    step = math.ceil(step * 1000) / 1000
    # The upper bound is inclusive of "now": readings stamped this very millisecond count.
    return Window(since, until + 1e-6, step)
