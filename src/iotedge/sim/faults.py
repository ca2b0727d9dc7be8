"""Fault injection for the device API: latency, errors, garbage and hangs.

A pure ASGI middleware in front of the course endpoints (``/iot_*``) only; the
simulator's own ``/_sim/*``, ``/healthz`` and docs are never faulted. The settings can be
changed at run time (``PUT /_sim/faults``) so a test can take the device API "down" and
bring it back without restarting it.
"""

import asyncio
import json
import random
from dataclasses import asdict, dataclass, field

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["FaultMiddleware", "Faults"]

_GARBAGE: dict[str, tuple[int, str, bytes]] = {
    "truncated": (
        200,
        "application/json",
        b'{"id": "device_1", "client": "client_1", "metrics": {"temper',
    ),
    "malformed": (200, "application/json", b"{'id': device_1,, 'metrics': [}"),
    "html": (
        502,
        "text/html; charset=utf-8",
        b"<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>",
    ),
    "wrong_types": (
        200,
        "application/json",
        json.dumps(
            {
                "id": 17,
                "client": ["client_1"],
                "type": "temperature_sensor",
                "metrics": {"temperature": "hot", "battery_level": "87%"},
                "timestamp": 1234,
            }
        ).encode(),
    ),
    "partial": (200, "application/json", b'{"id": "device_1"}'),
}


@dataclass(kw_only=True)
class Faults:
    """What the device API currently does wrong; all rates are shares of requests, 0..1."""

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    error_rate: float = 0.0
    garbage_rate: float = 0.0
    garbage_kinds: list[str] = field(default_factory=lambda: list(_GARBAGE))
    hang_rate: float = 0.0
    hang_seconds: float = 30.0

    @property
    def active(self) -> bool:
        """Whether any fault is configured."""
        return any((self.latency_ms, self.jitter_ms, self.error_rate, self.garbage_rate, self.hang_rate))

    def as_json(self) -> dict[str, object]:
        """The current faults as a JSON-ready dict."""
        return asdict(self)


async def _send_body(send: Send, status: int, content_type: str, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class FaultMiddleware:
    """Apply the current :class:`Faults` to requests for ``/iot_*`` paths."""

    def __init__(self, app: ASGIApp, *, faults: Faults, rng: random.Random | None = None) -> None:
        self.app = app
        self.faults = faults
        self._rng = rng or random.Random()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        faults = self.faults
        if scope["type"] != "http" or not faults.active or not scope["path"].startswith("/iot_"):
            await self.app(scope, receive, send)
            return
        rng = self._rng
        delay = faults.latency_ms + faults.jitter_ms * rng.random()
        if delay > 0:
            await asyncio.sleep(delay / 1000)
        if faults.hang_rate and rng.random() < faults.hang_rate:
            await asyncio.sleep(faults.hang_seconds)
        if faults.error_rate and rng.random() < faults.error_rate:
            status = rng.choice((500, 503))
            body = json.dumps({"error": "Internal Server Error" if status == 500 else "Service Unavailable"})
            await _send_body(send, status, "application/json", body.encode())
            return
        if faults.garbage_rate and faults.garbage_kinds and rng.random() < faults.garbage_rate:
            status, content_type, raw = _GARBAGE[rng.choice(faults.garbage_kinds)]
            await _send_body(send, status, content_type, raw)
            return
        await self.app(scope, receive, send)
