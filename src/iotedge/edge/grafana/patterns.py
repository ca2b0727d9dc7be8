"""User regular expressions (ad-hoc filters ``=~``/``!~``) on a linear-time engine.

Python's ``re`` backtracks: a crafted pattern such as ``[a-z]{2}(\\w|[a-z_]|.)*X`` takes
seconds on a short value, and a filter runs on the event loop, so one request would stall
every client. RE2 matches in time linear in the value, with bounded memory; it refuses
what it cannot do in linear time (backreferences, lookaround), which is answered 422.
"""

from dataclasses import dataclass
from typing import Any

import re2

from iotedge.errors import BadRequest

__all__ = ["MAX_PATTERN", "UserPattern", "compile_pattern"]

MAX_PATTERN = 256
"""Longest user pattern accepted (characters)."""

_MAX_MEM = 1 << 20  # bytes RE2 may use for one compiled pattern; past it, compiling fails

_OPTIONS = re2.Options()
_OPTIONS.max_mem = _MAX_MEM
_OPTIONS.log_errors = False  # a refused pattern is the caller's 422, not a line on stderr


@dataclass(frozen=True, slots=True)
class UserPattern:
    """A compiled user pattern; :meth:`fullmatch` takes time linear in the value."""

    text: str
    _compiled: Any

    def fullmatch(self, value: str) -> bool:
        """Whether the whole of ``value`` matches."""
        return self._compiled.fullmatch(value) is not None


def compile_pattern(text: str, parameter: str) -> UserPattern:
    """Compile ``text`` for matching tag values.

    Args:
        text: the pattern, RE2 syntax (Perl-like, without backreferences or lookaround).
        parameter: the request field it came from, named in the 422.

    Raises:
        BadRequest: the pattern is too long, invalid, or uses syntax RE2 does not support.
    """
    if len(text) > MAX_PATTERN:
        raise BadRequest(
            parameter, f"regular expression longer than {MAX_PATTERN} characters", location="body"
        )
    try:
        compiled = re2.compile(text, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else exc
        raise BadRequest(
            parameter, f"unsupported or invalid regular expression (RE2 syntax): {reason}", location="body"
        ) from None
    return UserPattern(text, compiled)
