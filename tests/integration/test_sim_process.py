"""The simulator as a real process: every endpoint, every 404, every fault mode, the CLI."""

import itertools
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from iotedge.sim.fleet import Fleet
from tests.procs import Proc, start_iotedge

pytestmark = pytest.mark.integration


def _epoch(iso: str) -> float:
    from datetime import UTC, datetime

    return datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp()


def test_root_points_to_the_catalogue(sim: Proc) -> None:
    """GET / answers with a message and a hint."""
    body = httpx.get(sim.url + "/").json()
    assert body["hint"] == "start with /iot_objects"
    assert "6 objects" in body["message"]


def test_catalogue_and_by_client(sim: Proc) -> None:
    """The catalogue lists the six course objects; by_client filters it."""
    objects = httpx.get(sim.url + "/iot_objects").json()
    assert objects[0] == {"id": "device_1", "client": "client_1", "type": "temperature_sensor"}
    assert len(objects) == 6
    mine = httpx.get(sim.url + "/iot_objects/by_client/client_2").json()
    assert [o["id"] for o in mine] == ["device_3", "device_4"]


@pytest.mark.parametrize("path", ["/iot_data/device_1", "/iot_objects/device_1"])
def test_current_reading_matches_the_model(sim: Proc, path: str) -> None:
    """Both current-reading paths give the course shape and the model's values."""
    body = httpx.get(sim.url + path).json()
    assert set(body) == {"id", "client", "type", "metrics", "timestamp"}
    assert set(body["metrics"]) == {"temperature", "humidity", "battery_level", "activity_level"}
    assert body["metrics"]["humidity"] is None
    assert "+" not in body["timestamp"] and "Z" not in body["timestamp"]
    fleet = Fleet(seed=42)
    expected = fleet.reading(fleet.by_id["device_1"], _epoch(body["timestamp"])).metrics
    assert body["metrics"] == expected


def test_repeated_calls_within_a_bucket_agree(sim: Proc) -> None:
    """Two calls in the same 5 s bucket return identical bodies."""
    for _ in range(5):
        a = httpx.get(sim.url + "/iot_data/device_3").json()
        b = httpx.get(sim.url + "/iot_data/device_3").json()
        if a["timestamp"] == b["timestamp"]:
            assert a == b
            return
    pytest.fail("never two calls in one bucket")


def test_history_is_consistent_with_data(sim: Proc) -> None:
    """History: 10 points a minute apart, newest first, equal to the model's readings."""
    body = httpx.get(sim.url + "/iot_objects/device_2/history").json()
    points = body["history"]
    assert len(points) == 10 and body["type"] == "humidity_sensor"
    times = [_epoch(p["timestamp"]) for p in points]
    assert all(a - b == 60 for a, b in itertools.pairwise(times))
    fleet = Fleet(seed=42)
    obj = fleet.by_id["device_2"]
    assert [p["value"] for p in points] == [fleet.reading(obj, t).metrics["humidity"] for t in times]
    assert len(httpx.get(sim.url + "/iot_objects/device_2/history?limit=120").json()["history"]) == 120


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/iot_data/device_999", {"error": "Device not found"}),
        ("/iot_objects/nope", {"error": "Device not found"}),
        ("/iot_objects/nope/history", {"error": "Device not found"}),
        ("/iot_objects/by_client/client_9", {"error": "No devices found for this client"}),
        ("/iot_data/" + "x" * 5000, {"error": "Device not found"}),
        ("/iot_data/d%C3%A9vice_%E2%9C%93", {"error": "Device not found"}),
        ("/iot_data/..%2F..%2Fetc%2Fpasswd", None),
        ("/iot_objects/by_client/%00", {"error": "No devices found for this client"}),
        ("/no/such/path", None),
    ],
)
def test_unknown_and_odd_ids_get_json_404(sim: Proc, path: str, body: dict[str, str] | None) -> None:
    """Unknown or hostile ids get 404 with a JSON error body, never 500."""
    response = httpx.get(sim.url + path)
    assert response.status_code == 404
    payload = response.json()
    assert "error" in payload
    if body is not None:
        assert payload == body


@pytest.mark.parametrize("limit", ["0", "1001", "ten", "-1", "1e3"])
def test_bad_limit_is_422_naming_the_parameter(sim: Proc, limit: str) -> None:
    """A bad history limit is refused with 422 and names 'limit'."""
    response = httpx.get(sim.url + f"/iot_objects/device_1/history?limit={limit}")
    assert response.status_code == 422
    assert response.json()["detail"][0]["parameter"] == "limit"


def test_anomaly_ground_truth_endpoint(sim: Proc) -> None:
    """/_sim/anomalies lists the model's events for a window."""
    since, until = 1_790_000_000, 1_790_000_000 + 86_400
    body = httpx.get(sim.url + f"/_sim/anomalies?since={since}&until={until}").json()
    expected = list(Fleet(seed=42).anomalies(since, until))
    assert len(body["anomalies"]) == len(expected) > 0
    assert body["anomalies"][0]["object_id"] == expected[0].object_id
    assert httpx.get(sim.url + "/_sim/anomalies?since=yesterday").status_code == 422


def test_openapi_docs_are_served(sim: Proc) -> None:
    """/docs and /openapi.json describe the course endpoints."""
    assert httpx.get(sim.url + "/docs").status_code == 200
    paths = httpx.get(sim.url + "/openapi.json").json()["paths"]
    assert {"/iot_objects", "/iot_data/{object_id}", "/iot_objects/{object_id}/history"} <= set(paths)


@pytest.fixture
def faulty_sim(logs_dir: Path) -> Iterator[Proc]:
    """A private simulator whose faults a test may change."""
    with start_iotedge(["sim"], log_dir=logs_dir) as proc:
        yield proc
        httpx.put(proc.url + "/_sim/faults", json={"error_rate": 0, "garbage_rate": 0, "hang_rate": 0})


def test_error_rate_fault(faulty_sim: Proc) -> None:
    """error_rate 1 makes every device call 500 or 503 while /healthz stays up."""
    httpx.put(faulty_sim.url + "/_sim/faults", json={"error_rate": 1.0})
    codes = {httpx.get(faulty_sim.url + "/iot_data/device_1").status_code for _ in range(20)}
    assert codes <= {500, 503} and codes
    assert httpx.get(faulty_sim.url + "/healthz").status_code == 200


@pytest.mark.parametrize("kind", ["truncated", "malformed", "html", "wrong_types", "partial"])
def test_garbage_faults(faulty_sim: Proc, kind: str) -> None:
    """Each garbage kind produces a body the course shape cannot be read from."""
    httpx.put(faulty_sim.url + "/_sim/faults", json={"garbage_rate": 1.0, "garbage_kinds": [kind]})
    response = httpx.get(faulty_sim.url + "/iot_data/device_1")
    if kind == "html":
        assert response.status_code == 502 and response.text.startswith("<html>")
        return
    try:
        body = response.json()
    except json.JSONDecodeError:
        assert kind in {"truncated", "malformed"}
        return
    assert not (isinstance(body.get("metrics"), dict) and isinstance(body.get("timestamp"), str))


def test_latency_and_hang_faults(faulty_sim: Proc) -> None:
    """Latency delays answers; a hang outlasts a short client timeout."""
    httpx.put(faulty_sim.url + "/_sim/faults", json={"latency_ms": 200})
    start = time.monotonic()
    assert httpx.get(faulty_sim.url + "/iot_data/device_1").status_code == 200
    assert time.monotonic() - start >= 0.2
    httpx.put(faulty_sim.url + "/_sim/faults", json={"latency_ms": 0, "hang_rate": 1.0, "hang_seconds": 5})
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(faulty_sim.url + "/iot_data/device_1", timeout=0.5)


def test_faults_from_flags(logs_dir: Path) -> None:
    """--error-rate given on the command line applies from the start."""
    with start_iotedge(["sim", "--error-rate", "1"], log_dir=logs_dir) as proc:
        assert httpx.get(proc.url + "/iot_objects").status_code in {500, 503}


def test_large_fleet_from_environment(logs_dir: Path) -> None:
    """IOTEDGE_SIM_CLIENTS and _OBJECTS_PER_CLIENT size the fleet (10,000 objects)."""
    env = {"IOTEDGE_SIM_CLIENTS": "1000", "IOTEDGE_SIM_OBJECTS_PER_CLIENT": "10"}
    with start_iotedge(["sim"], log_dir=logs_dir, env=env) as proc:
        assert len(httpx.get(proc.url + "/iot_objects").json()) == 10_000
        assert httpx.get(proc.url + "/iot_data/device_10000").json()["client"] == "client_1000"


def test_cli_help_and_bad_flags() -> None:
    """--help documents the flags; a bad value is a clear error, not a traceback."""
    out = subprocess.run(
        [sys.executable, "-m", "iotedge", "sim", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--objects-per-client" in out and "IOTEDGE_SIM_" in out
    bad = subprocess.run(
        [sys.executable, "-m", "iotedge", "sim", "--error-rate", "2"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0
    assert "error_rate" in bad.stderr or "error-rate" in bad.stderr
    assert "Traceback" not in bad.stderr
