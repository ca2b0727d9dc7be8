"""The edge through device API outages, garbage and a kill -9: stale data, recovery, no loss."""

import re
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import KEYS, edge_args, edge_env, wait_for
from tests.procs import Proc, free_port, start_iotedge

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HEADERS = {"x-api-key": KEYS["*"]}
# A fixed window, so counts never shrink as old readings slide out of a relative one.
WINDOW = {"from": str(time.time() - 86400), "to": str(time.time() + 86400)}


@pytest.fixture(scope="module")
def sim(logs_dir: Path) -> Iterator[Proc]:
    """The module's simulator, whose faults the tests change (each test starts without any)."""
    with start_iotedge(["sim", "--interval", "1", "--anomaly-rate", "0"], log_dir=logs_dir) as proc:
        yield proc


@pytest.fixture(autouse=True)
def _no_faults(sim: Proc) -> Iterator[None]:
    _faults(sim, error_rate=0.0, garbage_rate=0.0, hang_rate=0.0)
    yield
    _faults(sim, error_rate=0.0, garbage_rate=0.0, hang_rate=0.0)


@dataclass(frozen=True)
class MeteredEdge:
    """An edge with its metrics port."""

    proc: Proc
    metrics_port: int

    def cycles(self) -> float:
        """Polling cycles finished so far, whatever their outcome."""
        text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10).text
        found = re.findall(r"^iotedge_collector_cycles_total\{[^}]*\} (\S+)$", text, re.MULTILINE)
        return sum(float(value) for value in found)

    def wait_cycles(self, more: int, what: str) -> None:
        """Wait (bounded) until ``more`` further cycles have finished."""
        target = self.cycles() + more
        wait_for(lambda: self.cycles() >= target, 15 + 3 * more, what)


@pytest.fixture(scope="module")
def garbage_edge(
    sim: Proc, logs_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MeteredEdge]:
    """One edge, polling the module's simulator, for every garbage kind in turn."""
    metrics_port = free_port()
    args = [*edge_args(sim.url, tmp_path_factory.mktemp("garbage-edge")), "--metrics-port", str(metrics_port)]
    with start_iotedge(args, log_dir=logs_dir, env=edge_env()) as edge:
        yield MeteredEdge(edge, metrics_port)


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
def test_garbage_is_counted_never_stored_never_fatal(sim: Proc, garbage_edge: MeteredEdge, kind: str) -> None:
    """With every device answer garbage of one kind the edge stays up and stores nothing new."""
    edge = garbage_edge.proc
    stored = _count(edge)
    wait_for(lambda: _count(edge) > stored, 15, "new readings before the garbage")
    _faults(sim, garbage_rate=1.0, garbage_kinds=[kind])
    # The cycle in flight may still store good answers; the one after it polls garbage only.
    garbage_edge.wait_cycles(2, "two cycles since the garbage began")
    before = _count(edge)
    garbage_edge.wait_cycles(2, "two cycles of garbage only")
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
