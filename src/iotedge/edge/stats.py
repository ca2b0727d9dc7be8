"""Pure statistics over a list of values: the reference the store's SQL must agree with."""

import math
from collections.abc import Sequence

from iotedge.edge.store.summaries import EMPTY, Summary

__all__ = ["summarise", "zscore"]


def summarise(values: Sequence[float]) -> Summary:
    """Summarise values in time order (``last`` is the final one; ``last_at`` stays unknown)."""
    if not values:
        return EMPTY
    mean = math.fsum(values) / len(values)
    variance = math.fsum((v - mean) ** 2 for v in values) / len(values)
    return Summary(len(values), mean, min(values), max(values), math.sqrt(variance), values[-1])


def zscore(value: float, window: Sequence[float], *, min_stddev: float) -> float | None:
    """How many standard deviations ``value`` lies from the window's mean.

    None when the window is empty; the stddev is floored at ``min_stddev`` so a very
    quiet signal does not turn rounding noise into anomalies.
    """
    if not window:
        return None
    summary = summarise(window)
    mean = summary.average or 0.0
    return (value - mean) / max(summary.stddev or 0.0, min_stddev)
