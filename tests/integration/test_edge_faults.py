"""The edge through device API outages, garbage and a kill -9: stale data, recovery, no loss."""

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import KEYS, edge_args, edge_env, wait_for
from tests.procs import Proc, start_iotedge

pytestmark = pytest.mark.integration

HEADERS = {"x-api-key": KEYS["*"]}
# A fixed window, so counts never shrink as old readings slide out of a relative one.
WINDOW = {"from": str(time.time() - 86400), "to": str(time.time() + 86400)}


@pytest.fixture
def sim(logs_dir: Path) -> Iterator[Proc]:
    """A private simulator whose faults the test changes."""
    with start_iotedge(["sim", "--interval", "1", "--anomaly-rate", "0"], log_dir=logs_dir) as proc:
        yield proc


def _faults(sim: Proc, **faults: object) -> None:
    httpx.put(sim.url + "/_sim/faults", json=faults).raise_for_status()


def _count(edge: Proc, object_id: str = "device_1") -> int:
    body = httpx.get(edge.url + "/processed_data", params={"object_id": object_id, **WINDOW}, headers=HEADERS)
    return int(body.json()["statistics"]["count"]) if body.status_code == 200 else 0


def _ready(edge: Proc) -> bool:
    return httpx.get(edge.url + "/readyz").status_code == 200


def _upstream_ok(edge: Proc) -> bool:
    ready = httpx.get(edge.url + "/readyz")
    assert ready.status_code == 200, ready.text  # the device API's health never makes the edge unready
    return bool(ready.json()["checks"]["upstream"]["ok"])


def test_outage_serves_stale_data_then_recovers(sim: Proc, logs_dir: Path, tmp_path: Path) -> None:
    """Device API down: readyz still 200 with the upstream check failing, data served marked stale, no 5xx."""
    args = [*edge_args(sim.url, tmp_path), "--stale-after", "3s"]
    with start_iotedge(args, log_dir=logs_dir, env=edge_env()) as edge:
        wait_for(lambda: _ready(edge), 15, "edge ready")
        _faults(sim, error_rate=1.0)
        wait_for(lambda: not _upstream_ok(edge), 10, "readyz to report the device API down")
        body = httpx.get(
            edge.url + "/processed_data", params={"object_id": "device_1"}, headers=HEADERS
        ).json()
        assert body["stale"] is True
        assert body["statistics"]["count"] > 0
        for path in ("/objects", "/client_statistics", "/anomalies"):
            assert httpx.get(edge.url + path, headers=HEADERS).status_code == 200
        _faults(sim, error_rate=0.0)
        down_ended = time.monotonic()
        wait_for(lambda: _upstream_ok(edge), 10, "recovery")
        recovery = time.monotonic() - down_ended
        print(f"\nrecovered {recovery:.2f} s after the device API came back")  # noqa: T201
        fresh = httpx.get(
            edge.url + "/processed_data", params={"object_id": "device_1"}, headers=HEADERS
        ).json()
        assert fresh["stale"] is False


@pytest.mark.parametrize("kind", ["truncated", "malformed", "html", "wrong_types", "partial"])
def test_garbage_is_counted_never_stored_never_fatal(
    sim: Proc, logs_dir: Path, tmp_path: Path, kind: str
) -> None:
    """With every device answer garbage of one kind the edge stays up and stores nothing new."""
    with start_iotedge(edge_args(sim.url, tmp_path), log_dir=logs_dir, env=edge_env()) as edge:
        wait_for(lambda: _count(edge) > 0, 15, "first readings")
        _faults(sim, garbage_rate=1.0, garbage_kinds=[kind])
        time.sleep(1.5)
        before = _count(edge)
        time.sleep(2.5)
        assert _count(edge) == before
        assert edge.popen.poll() is None
        assert httpx.get(edge.url + "/objects", headers=HEADERS).status_code == 200
        assert "Traceback" not in edge.log()


def test_kill_9_keeps_every_committed_reading(sim: Proc, logs_dir: Path, tmp_path: Path) -> None:
    """After kill -9 mid-ingestion the store reopens with at least what was served before."""
    args = edge_args(sim.url, tmp_path)
    with start_iotedge(args, log_dir=logs_dir, env=edge_env()) as edge:
        wait_for(lambda: _count(edge) >= 5, 15, "readings")
        acknowledged = _count(edge)
        edge.stop(signal.SIGKILL)
    with start_iotedge(args, log_dir=logs_dir, env=edge_env()) as edge:
        assert _count(edge) >= acknowledged
        wait_for(lambda: _count(edge) > acknowledged, 10, "ingestion to resume")


def test_hanging_device_api_does_not_hang_the_edge(sim: Proc, logs_dir: Path, tmp_path: Path) -> None:
    """With every device call hanging, API requests still answer quickly from the store."""
    with start_iotedge(edge_args(sim.url, tmp_path), log_dir=logs_dir, env=edge_env()) as edge:
        wait_for(lambda: _count(edge) > 0, 15, "first readings")
        _faults(sim, hang_rate=1.0, hang_seconds=5)
        time.sleep(2)
        response = httpx.get(
            edge.url + "/processed_data", params={"object_id": "device_1"}, headers=HEADERS, timeout=2
        )
        assert response.status_code == 200
        _faults(sim, hang_rate=0.0)


def test_an_edge_limited_to_a_client_group(sim: Proc, logs_dir: Path, tmp_path: Path) -> None:
    """--clients splits the fleet: this edge polls and serves only client_2's objects."""
    args = [*edge_args(sim.url, tmp_path), "--clients", "client_2"]
    with start_iotedge(args, log_dir=logs_dir, env=edge_env()) as edge:
        wait_for(lambda: _ready(edge), 15, "edge ready")
        objects = httpx.get(edge.url + "/objects", headers=HEADERS).json()["objects"]
        assert {o["id"] for o in objects} == {"device_3", "device_4"}
        assert (
            httpx.get(
                edge.url + "/processed_data", params={"object_id": "device_1"}, headers=HEADERS
            ).status_code
            == 404
        )
