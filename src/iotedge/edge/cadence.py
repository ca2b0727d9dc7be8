"""How often a device actually reports: the typical gap between its own reading times.

The offline rule measures a reading's age against this, not against the poll interval, so
polling every second a device that reports every five seconds opens no false offline events.
"""

import statistics
from collections.abc import Iterable

__all__ = ["UNKNOWN_PERIOD_S", "Cadence"]

# Gaps remembered. The median of three ignores one missed or doubled report, and follows a
# new cadence within three reports: after a start, the stored history's minute spacing
# (the device API's history) gives way to the live readings' own period at once.
_GAPS = 3
# Until a device has reported twice its period is unknown: assume it reports at least once a
# minute (the device API's history spacing) rather than as often as we poll, which would call
# a device offline between its first and its second report.
UNKNOWN_PERIOD_S = 60.0


class Cadence:
    """The median gap between the last few distinct reading times of one series."""

    __slots__ = ("_gaps", "_last")

    def __init__(self, times: Iterable[float] = ()) -> None:
        # A tuple, not a deque(maxlen=3): 64 bytes instead of 760, one per series.
        self._gaps: tuple[float, ...] = ()
        self._last: float | None = None
        for ts in sorted(times):
            self.observe(ts)

    def observe(self, ts: float) -> None:
        """Note a reading taken at ``ts`` (older or repeated times are ignored)."""
        if self._last is not None:
            if ts <= self._last:
                return
            self._gaps = (*self._gaps[1 - _GAPS :], ts - self._last)
        self._last = ts

    @property
    def period(self) -> float | None:
        """The typical gap in seconds, None until two reading times are known."""
        return statistics.median(self._gaps) if self._gaps else None

    def silence_limit(self, *, intervals: float, poll_interval: float) -> float:
        """How old the newest reading may be before the device counts as offline.

        ``intervals`` reporting periods (never shorter than the poll interval, since a
        reading cannot be seen sooner than it is polled; :data:`UNKNOWN_PERIOD_S` while
        unknown) plus one poll interval of slack.
        """
        period = max(UNKNOWN_PERIOD_S if self.period is None else self.period, poll_interval)
        return intervals * period + poll_interval
