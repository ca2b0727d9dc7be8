"""Durations as people write them (``500ms``, ``5s``, ``15m``, ``2h``, ``7d``), in seconds."""

__all__ = ["parse_duration"]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: str | float | int) -> float:
    """Seconds from ``5``, ``5s``, ``250ms``, ``15m``, ``2h`` or ``7d``."""
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip().lower()
        for suffix in ("ms", "s", "m", "h", "d"):
            if text.endswith(suffix) and text[: -len(suffix)].strip():
                number, factor = text[: -len(suffix)], _UNITS[suffix]
                break
        else:
            number, factor = text, 1.0
        try:
            seconds = float(number) * factor
        except ValueError:
            raise ValueError(f"not a duration: {value!r} (use e.g. 500ms, 5s, 15m, 2h, 7d)") from None
    if not seconds >= 0 or seconds == float("inf"):
        raise ValueError(f"duration must be a finite number >= 0, got {value!r}")
    return seconds
