"""The naive edge of the course, written by us as the benchmark's baseline.

It follows the course's example: a Flask app with a dict of API keys that, on every
request, asks the device API for what it needs with ``requests``, one call after the
other, one call per object, and keeps nothing between requests. Served by waitress (a
thread-pool WSGI server), the usual way to run a Flask app in production.

    python bench/naive_edge.py --port 5001 --upstream http://127.0.0.1:8000
"""

import argparse
from typing import Any

import requests
import waitress
from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue

__all__ = ["API_KEYS", "create_app", "main"]

# The course keeps its keys in a dict in the source; so does the baseline.
API_KEYS: dict[str, str] = {
    "naive-key-client-1": "client_1",
    "naive-key-client-2": "client_2",
    "naive-key-client-3": "client_3",
}

# The primary metric of each course device type (what /history serves).
_PRIMARY = {
    "temperature_sensor": "temperature",
    "humidity_sensor": "humidity",
    "activity_tracker": "activity_level",
}

_TIMEOUT_S = 30.0


def _summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"count": 0, "average": None, "min": None, "max": None}
    return {
        "count": len(values),
        "average": round(sum(values) / len(values), 2),
        "min": min(values),
        "max": max(values),
    }


def create_app(upstream: str) -> Flask:
    """The naive edge for the device API at ``upstream``."""
    app = Flask("naive_edge")
    base = upstream.rstrip("/")

    def client_of_key() -> str | None:
        return API_KEYS.get(request.headers.get("x-api-key", ""))

    def unauthorized() -> ResponseReturnValue:
        return jsonify({"error": "Unauthorized"}), 401

    def fetch(path: str) -> tuple[int, Any]:
        # A fresh connection per call, as the course's plain requests.get does.
        response = requests.get(base + path, timeout=_TIMEOUT_S)
        try:
            return response.status_code, response.json()
        except ValueError:
            return 502, None

    @app.get("/healthz")
    def healthz() -> ResponseReturnValue:
        return jsonify({"status": "ok"})

    @app.get("/processed_data")
    def processed_data() -> ResponseReturnValue:
        client = client_of_key()
        if client is None:
            return unauthorized()
        object_id = request.args.get("object_id")
        if not object_id:
            return jsonify({"error": "object_id is required"}), 400
        status, current = fetch(f"/iot_data/{object_id}")
        if status == 404 or (status == 200 and current.get("client") != client):
            return jsonify({"error": "Device not found"}), 404
        if status != 200:
            return jsonify({"error": "Device API unavailable"}), 502
        status, history = fetch(f"/iot_objects/{object_id}/history")
        if status != 200:
            return jsonify({"error": "Device API unavailable"}), 502
        values = [p["value"] for p in history.get("history", []) if p.get("value") is not None]
        metric = _PRIMARY.get(current.get("type", ""))
        return jsonify(
            {
                "object_id": object_id,
                "client": client,
                "type": current.get("type"),
                "metric": metric,
                "statistics": _summary(values),
                "last": current.get("metrics", {}).get(metric),
                "timestamp": current.get("timestamp"),
            }
        )

    @app.get("/client_statistics")
    def client_statistics() -> ResponseReturnValue:
        client = client_of_key()
        if client is None:
            return unauthorized()
        wanted = request.args.get("client_id", client)
        if wanted != client:
            return jsonify({"error": "No devices found for this client"}), 404
        status, objects = fetch(f"/iot_objects/by_client/{client}")
        if status == 404:
            return jsonify({"error": "No devices found for this client"}), 404
        if status != 200:
            return jsonify({"error": "Device API unavailable"}), 502
        per_metric: dict[str, list[float]] = {}
        per_object = []
        for obj in objects:
            status, data = fetch(f"/iot_data/{obj['id']}")
            if status != 200:
                continue
            metrics = {k: v for k, v in data.get("metrics", {}).items() if v is not None}
            for key, value in metrics.items():
                per_metric.setdefault(key, []).append(value)
            per_object.append({"object_id": obj["id"], "type": obj["type"], "metrics": metrics})
        return jsonify(
            {
                "client": client,
                "objects": len(objects),
                "answered": len(per_object),
                "metrics": {key: _summary(vals) for key, vals in sorted(per_metric.items())},
                "per_object": per_object,
            }
        )

    return app


def main() -> None:
    """Serve the naive edge with waitress."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5001)
    parser.add_argument("--upstream", default="http://127.0.0.1:8000")
    parser.add_argument("--threads", type=int, default=8, help="waitress worker threads")
    args = parser.parse_args()
    waitress.serve(
        create_app(args.upstream),
        host=args.host,
        port=args.port,
        threads=args.threads,
        ident="naive-edge",
        _quiet=True,
    )


if __name__ == "__main__":
    main()
