"""Send a body the edge built itself: orjson bytes, no second pass through the response model.

FastAPI validates a route's return value against its ``response_model`` and then
serialises it; for the hot statistics routes that was a large share of each request.
Their bodies are dicts of str, int, float, bool and None that this code assembled, so the
model only documents them (OpenAPI); ``tests/integration/test_trusted_bodies.py`` keeps
each body equal to its model's round trip.
"""

import secrets
from collections.abc import Sequence
from typing import Any

import orjson
from starlette.background import BackgroundTask
from starlette.responses import Response

__all__ = ["Spliced", "TrustedJSON"]


class TrustedJSON(Response):
    """``application/json`` rendered by orjson (NaN and infinities become null, as pydantic does)."""

    media_type = "application/json"

    def __init__(
        self,
        content: Any,
        status_code: int = 200,
        headers: dict[str, str] | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        super().__init__(content, status_code, headers, self.media_type, background)

    def render(self, content: Any) -> bytes:
        """The body's bytes (``content`` already rendered when it is bytes)."""
        return content if isinstance(content, bytes) else orjson.dumps(content)


# Unguessable, so no value of a body can contain it.
_HOLE = f"iotedge-hole-{secrets.token_hex(16)}-"


class Spliced:
    """A JSON object rendered once with holes for the top-level fields that change per request.

    :meth:`render` gives the bytes ``orjson.dumps`` gives the object with those fields filled
    in: orjson writes no whitespace, so a field's value is the same bytes inside or outside.
    """

    __slots__ = ("_parts",)

    def __init__(self, body: dict[str, Any], holes: Sequence[str]) -> None:
        """``holes`` in the order they come in ``body``; their values in ``body`` are ignored."""
        marks = {name: f"{_HOLE}{n}" for n, name in enumerate(holes)}
        rest = orjson.dumps({name: marks.get(name, value) for name, value in body.items()})
        self._parts: list[bytes] = []
        for name in holes:
            before, found, rest = rest.partition(orjson.dumps(marks[name]))
            if not found:
                raise ValueError(f"hole {name!r} is not a top-level field of the body, in order")
            self._parts.append(before)
        self._parts.append(rest)

    def render(self, *values: Any) -> bytes:
        """The body with ``values`` in its holes, in order."""
        parts = self._parts
        out = [parts[0]]
        for value, part in zip(values, parts[1:], strict=True):
            out.append(orjson.dumps(value))
            out.append(part)
        return b"".join(out)
