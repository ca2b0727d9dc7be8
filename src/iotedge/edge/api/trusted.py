"""Send a body the edge built itself: orjson bytes, no second pass through the response model.

FastAPI validates a route's return value against its ``response_model`` and then
serialises it; for the hot statistics routes that was a large share of each request.
Their bodies are dicts of str, int, float, bool and None that this code assembled, so the
model only documents them (OpenAPI); ``tests/integration/test_trusted_bodies.py`` keeps
each body equal to its model's round trip.
"""

from typing import Any

import orjson
from starlette.background import BackgroundTask
from starlette.responses import Response

__all__ = ["TrustedJSON"]


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
        """The body's bytes."""
        return orjson.dumps(content)
