"""A loopback replay of the course's public device API, from the shapes in fixtures/renderiotapi.json.

The real service cannot be reached from the tests, so this small stdlib HTTP server answers
as it does: ``/iot_objects/<id>`` for the current reading (``/iot_data/<id>`` is Flask's
HTML 404), a history of exactly 10 points whatever ``limit`` says, values re-drawn on every
call, naive timestamps with microseconds, keys in alphabetical order.
"""

import contextlib
import json
import random
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

FIXTURE = Path(__file__).parent / "fixtures" / "renderiotapi.json"
SHAPES: dict[str, Any] = json.loads(FIXTURE.read_text())
_PRIMARY = {
    "temperature_sensor": "temperature",
    "humidity_sensor": "humidity",
    "activity_tracker": "activity_level",
}


def _naive(moment: datetime) -> str:
    # The service writes datetime.now().isoformat(): no offset, microseconds unless zero.
    return moment.replace(tzinfo=None).isoformat()


def _value(metric: str, rng: random.Random) -> float | int:
    if metric == "temperature":
        return round(rng.uniform(20, 30), 2)
    if metric == "humidity":
        return rng.randint(40, 80)
    if metric == "battery_level":
        return rng.randint(10, 100)
    return rng.randint(0, 100)


def reading(obj: dict[str, str], now: datetime, rng: random.Random) -> dict[str, Any]:
    """A current reading of ``obj`` in the recorded shape, with fresh values and time."""
    body: dict[str, Any] = json.loads(json.dumps(SHAPES["reading"]))
    body.update(obj)
    wanted = {_PRIMARY[obj["type"]], "battery_level"}
    body["metrics"] = {key: _value(key, rng) if key in wanted else None for key in sorted(body["metrics"])}
    body["timestamp"] = _naive(now)
    return body


def history(obj: dict[str, str], now: datetime, rng: random.Random) -> dict[str, Any]:
    """Ten points a minute apart, newest first; 20-30 for temperature sensors, 40-80 otherwise."""
    low, high = (20, 30) if obj["type"] == "temperature_sensor" else (40, 80)
    points = [
        {"timestamp": _naive(now - timedelta(minutes=step)), "value": round(rng.uniform(low, high), 2)}
        for step in range(10)
    ]
    return {**obj, "history": points}


class _Handler(BaseHTTPRequestHandler):
    server: "CourseApi"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        objects = {obj["id"]: obj for obj in SHAPES["objects"]}
        now, rng = datetime.now(UTC), self.server.rng
        parts = path.strip("/").split("/")
        self.server.paths.append(path)
        if path == "/":
            self._json(200, SHAPES["root"])
        elif parts == ["iot_objects"]:
            self._json(200, SHAPES["objects"])
        elif len(parts) == 3 and parts[:2] == ["iot_objects", "by_client"]:
            mine = [obj for obj in SHAPES["objects"] if obj["client"] == parts[2]]
            self._json(200, mine) if mine else self._json(404, SHAPES["client_not_found"])
        elif len(parts) == 2 and parts[0] == "iot_objects":
            obj = objects.get(parts[1])
            self._json(200, reading(obj, now, rng)) if obj else self._json(404, SHAPES["device_not_found"])
        elif len(parts) == 3 and parts[0] == "iot_objects" and parts[2] == "history":
            obj = objects.get(parts[1])
            self._json(200, history(obj, now, rng)) if obj else self._json(404, SHAPES["device_not_found"])
        else:
            body = SHAPES["route_not_found_html"].encode()
            self._send(404, body, "text/html; charset=utf-8")

    def _json(self, status: int, payload: Any) -> None:
        self._send(status, json.dumps(payload, sort_keys=True).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output quiet."""


class CourseApi(ThreadingHTTPServer):
    """The replay server; ``paths`` records every path asked for."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.rng = random.Random(7)
        self.paths: list[str] = []

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://127.0.0.1:{self.server_address[1]}"


@contextlib.contextmanager
def course_api() -> Iterator[CourseApi]:
    """Serve the replay on a free loopback port until the block ends."""
    server = CourseApi()
    thread = threading.Thread(target=server.serve_forever, name="course-replay", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
