"""Time formats at the edge's boundaries: ISO 8601 out, epoch or ISO in."""

import functools
import math
from datetime import UTC, datetime

from iotedge.config import parse_duration
from iotedge.errors import BadRequest

__all__ = ["MAX_INSTANT", "epoch_ms", "iso_utc", "parse_instant", "parse_window"]

_MS_THRESHOLD = 100_000_000_000  # larger epoch numbers are milliseconds (year 5138 in s)

MAX_INSTANT = datetime(9000, 1, 1, tzinfo=UTC).timestamp()
"""Latest instant accepted: windows around it stay inside what ``datetime`` can write."""


def iso_utc(ts: float) -> str:
    """ISO 8601 in UTC with an explicit offset, e.g. ``2026-11-29T12:00:05+00:00``.

    Exactly ``datetime.fromtimestamp(ts, UTC).isoformat()``, in about half its time (two
    calls in every statistics answer): the whole seconds are formatted once each, and the
    microseconds are rounded as ``fromtimestamp`` rounds them (the fraction times 1e6, half
    to even, carried into the second at 1e6).
    """
    if not 0 <= ts < MAX_INSTANT:  # NaN, infinities and far instants: datetime's own answer or error
        return datetime.fromtimestamp(ts, UTC).isoformat()
    fraction, whole = math.modf(ts)
    micros = round(fraction * 1e6)
    if micros >= 1_000_000:
        micros -= 1_000_000
        whole += 1.0
    if micros:
        return f"{_iso_second(int(whole))}.{micros:06d}+00:00"
    return f"{_iso_second(int(whole))}+00:00"


@functools.lru_cache(maxsize=64)
def _iso_second(whole: int) -> str:
    """A whole second's ISO 8601 without its offset (the clock asks for a few at a time)."""
    return datetime.fromtimestamp(whole, UTC).isoformat()[: -len("+00:00")]


def epoch_ms(ts: float) -> int:
    """Epoch milliseconds, what Grafana wants on its time axis."""
    return round(ts * 1000)


def parse_instant(parameter: str, value: str, *, location: str = "query") -> float:
    """Epoch seconds from epoch seconds, epoch milliseconds (Grafana's ``${__from}``) or ISO 8601.

    Raises:
        BadRequest: naming ``parameter`` when the value is none of those.
    """
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is not None:
        if number != number or number in (float("inf"), float("-inf")) or number < 0:
            raise BadRequest(parameter, "must be a finite, non-negative epoch time", location=location)
        return _in_range(parameter, number / 1000 if number >= _MS_THRESHOLD else number, location)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise BadRequest(
            parameter, "use epoch seconds, epoch milliseconds or ISO 8601", location=location
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return _in_range(parameter, moment.timestamp(), location)


def _in_range(parameter: str, ts: float, location: str) -> float:
    if not 0 <= ts < MAX_INSTANT:
        raise BadRequest(parameter, "must be between 1970-01-01 and 9000-01-01 (UTC)", location=location)
    return ts


def parse_window(parameter: str, value: str, *, maximum: float) -> float:
    """Seconds from a duration such as ``15m``; must be positive and at most ``maximum``."""
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise BadRequest(parameter, str(exc)) from None
    if seconds <= 0 or seconds > maximum:
        raise BadRequest(parameter, f"must be > 0 and at most {maximum:g} seconds")
    return seconds
