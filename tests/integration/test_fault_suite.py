"""Fault suite: the edge API under device API faults, restarts and a full disk.

Each test injects one fault into a real simulator (``PUT /_sim/faults``) or into the edge
process, while a watcher keeps calling the edge API. For every fault: no 5xx except the
documented 503s (``/readyz`` not ready, "No data yet", "Store unavailable", all JSON), the
time to recover once the fault ends (printed, never asserted), and no reading acknowledged
by the API before the fault missing after it. test_edge_faults.py covers the basics (total
outage with stale flags, each garbage kind alone, kill -9, a single hang); this file adds
sustained and partial faults, slow answers, a graceful restart mid-poll and a full disk.
"""

import contextlib
import os
import resource
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import KEYS, edge_args, edge_env, wait_for
from tests.procs import Proc, free_port, start_iotedge

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLOUD = {"x-api-key": KEYS["*"]}
WATCHED = (
    "/processed_data?object_id=device_1",
    "/client_statistics",
    "/objects",
    "/anomalies",
    "/readyz",
    "/healthz",
)
# The 503s the API documents, by path prefix: anything else at 5xx is a failure.
DOCUMENTED_503: dict[str, set[str | None]] = {
    "/readyz": {None},
    "/processed_data": {"No data yet", "Store unavailable"},
    "/client_statistics": {"Store unavailable"},
    "/objects": {"Store unavailable"},
    "/anomalies": {"Store unavailable"},
}


@dataclass
class Answer:
    """One watched API call."""

    path: str
    status: int | None  # None: no HTTP answer at all
    error: str | None
    seconds: float


@dataclass
class Watch:
    """Calls the edge API in a loop on a thread until stopped (bounded in count)."""

    url: str
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _max_calls: int = 3000

    def run(self) -> None:
        """The thread's loop: every watched path in turn, about ten calls a second."""
        with httpx.Client(base_url=self.url, headers=CLOUD, timeout=5.0) as client:
            for n in range(self._max_calls):
                if self._stop.is_set():
                    return
                path = WATCHED[n % len(WATCHED)]
                started = time.monotonic()
                try:
                    response = client.get(path)
                except httpx.HTTPError as exc:
                    self.answers.append(Answer(path, None, type(exc).__name__, time.monotonic() - started))
                else:
                    error = None
                    if response.status_code >= 500:
                        try:
                            error = response.json().get("error")
                        except ValueError:
                            error = "<not JSON>"
                    self.answers.append(Answer(path, response.status_code, error, time.monotonic() - started))
                self._stop.wait(0.1)

    def stop(self) -> None:
        """Ask the loop to end."""
        self._stop.set()

    def undocumented(self) -> list[Answer]:
        """Calls that got no answer, or a 5xx the API does not document."""
        bad = []
        for answer in self.answers:
            if answer.status is None:
                bad.append(answer)
            elif answer.status >= 500:
                allowed = DOCUMENTED_503.get(answer.path.split("?")[0], set())
                if answer.status != 503 or answer.error not in allowed:
                    bad.append(answer)
        return bad

    def statuses(self, path: str) -> list[int | None]:
        """Statuses seen on ``path``."""
        return [a.status for a in self.answers if a.path == path]


@contextlib.contextmanager
def watching(edge: Proc) -> Iterator[Watch]:
    """Watch the edge API for the duration of the block."""
    watch = Watch(edge.url)
    thread = threading.Thread(target=watch.run, name="api-watch", daemon=True)
    thread.start()
    try:
        yield watch
    finally:
        watch.stop()
        thread.join(15)


def _faults(sim: Proc, **faults: object) -> None:
    httpx.put(sim.url + "/_sim/faults", json=faults, timeout=5).raise_for_status()


def _clear(sim: Proc) -> None:
    _faults(sim, latency_ms=0, jitter_ms=0, error_rate=0, garbage_rate=0, hang_rate=0)


def acknowledged(edge: Proc) -> int:
    """Readings the API reports, summed over every object and metric.

    The window is the retention (7 d), not the default hour: backfilled history reaches an
    hour back, and readings leaving a one-hour window would look like losses.
    """
    response = httpx.get(edge.url + "/client_statistics", params={"window": "7d"}, headers=CLOUD, timeout=10)
    if response.status_code != 200:
        return 0
    return sum(
        int(stats["count"])
        for client in response.json()["clients"]
        for obj in client["objects"]
        for stats in obj["metrics"].values()
    )


def _ready(edge: Proc) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(edge.url + "/readyz", timeout=5).status_code == 200
    return False


def recover(edge: Proc, since_count: int, what: str, timeout: float = 20.0) -> float:
    """Seconds until the edge is ready and stores new readings again; printed."""
    ended = time.monotonic()
    wait_for(lambda: _ready(edge) and acknowledged(edge) > since_count, timeout, f"recovery from {what}")
    seconds = time.monotonic() - ended
    print(f"\n{what}: recovered {seconds:.2f} s after the fault ended")  # noqa: T201
    return seconds


def _metric(metrics_port: int, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


def _timeouts(metrics_port: int) -> float:
    """Device API calls the edge gave up on at its timeout, so far."""
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("iotedge_upstream_requests_total{") and 'outcome="timeout"' in line
    )


def check(watch: Watch, edge: Proc) -> None:
    """The invariants every fault must keep: only documented 5xx, the edge still running."""
    bad = watch.undocumented()
    assert not bad, bad[:10]
    assert len(watch.answers) >= 5
    assert edge.popen.poll() is None, edge.log()[-3000:]
    assert "Traceback" not in edge.log()


@dataclass
class FaultStack:
    """The module's simulator and edge."""

    sim: Proc
    edge: Proc
    metrics_port: int


@pytest.fixture(scope="module")
def stack(logs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    """A 1 s simulator and an edge polling it every second (3 s device timeout, 5 s to stale)."""
    sim_args = ["sim", "--interval", "1", "--anomaly-rate", "0"]
    with start_iotedge(sim_args, log_dir=logs_dir) as sim:
        metrics_port = free_port()
        args = edge_args(sim.url, tmp_path_factory.mktemp("fault-edge"))
        args += ["--upstream-timeout", "3s", "--metrics-port", str(metrics_port), "--stale-after", "5s"]
        with start_iotedge(args, log_dir=logs_dir, env=edge_env()) as edge:
            wait_for(lambda: _ready(edge) and acknowledged(edge) > 0, 20, "edge ready with data")
            yield FaultStack(sim=sim, edge=edge, metrics_port=metrics_port)


@pytest.fixture(autouse=True)
def _no_faults_left(stack: FaultStack) -> Iterator[None]:
    """Every test starts and ends with a healthy device API."""
    _clear(stack.sim)
    yield
    _clear(stack.sim)


def test_sustained_outage(stack: FaultStack) -> None:
    """15 s of a dead device API: reads keep answering, readyz stays 200 (it can serve), nothing is lost."""
    edge = stack.edge
    before = acknowledged(edge)
    with watching(edge) as watch:
        _faults(stack.sim, error_rate=1.0)
        time.sleep(15)
        during = acknowledged(edge)
        degraded = httpx.get(edge.url + "/readyz", timeout=5).json()["degraded"]
        _clear(stack.sim)
        recover(edge, during, "15 s outage")
    check(watch, edge)
    assert set(watch.statuses("/readyz")) == {200}  # the device API's health is never readiness
    assert degraded == ["upstream"]
    assert set(watch.statuses("/processed_data?object_id=device_1")) == {200}
    assert during >= before
    assert acknowledged(edge) > during


def test_thirty_percent_errors(stack: FaultStack) -> None:
    """With 30% of device calls failing, readings keep arriving and the API stays clean."""
    edge = stack.edge
    before = acknowledged(edge)
    with watching(edge) as watch:
        _faults(stack.sim, error_rate=0.3)
        wait_for(lambda: acknowledged(edge) > before + 12, 15, "ingestion despite 30% errors")
        time.sleep(3)
        during = acknowledged(edge)
        _clear(stack.sim)
        recover(edge, during, "30% errors")
    check(watch, edge)
    assert set(watch.statuses("/objects")) == {200}


def test_two_second_latency(stack: FaultStack) -> None:
    """Device answers 2 s late: polls still land, the API answers from the store meanwhile."""
    edge = stack.edge
    before = acknowledged(edge)
    with watching(edge) as watch:
        _faults(stack.sim, latency_ms=2000)
        wait_for(lambda: acknowledged(edge) > before, 15, "a slow poll to land")
        time.sleep(4)
        during = acknowledged(edge)
        _clear(stack.sim)
        recover(edge, during, "2 s latency")
    check(watch, edge)
    data = [a.seconds for a in watch.answers if a.path.startswith("/processed_data")]
    print(f"\n/processed_data during 2 s device latency: max {max(data) * 1000:.0f} ms")  # noqa: T201
    assert during > before


def test_malformed_payloads_mixed_in(stack: FaultStack) -> None:
    """Half the answers garbage of every kind: counted as rejected, good ones stored, no 5xx."""
    edge = stack.edge
    before = acknowledged(edge)
    rejected = _metric(stack.metrics_port, "iotedge_readings_rejected_total")
    with watching(edge) as watch:
        _faults(stack.sim, garbage_rate=0.5)
        wait_for(
            lambda: _metric(stack.metrics_port, "iotedge_readings_rejected_total") > rejected,
            15,
            "rejections to be counted",
        )
        wait_for(lambda: acknowledged(edge) > before, 15, "good answers still stored")
        during = acknowledged(edge)
        _clear(stack.sim)
        recover(edge, during, "malformed payloads")
    check(watch, edge)


def test_hung_connections(stack: FaultStack) -> None:
    """Half the device calls hang for 30 s: the timeout frees them, the API never waits on them."""
    edge = stack.edge
    before = acknowledged(edge)
    timed_out = _timeouts(stack.metrics_port)
    with watching(edge) as watch:
        _faults(stack.sim, hang_rate=0.5, hang_seconds=30)
        wait_for(
            lambda: _timeouts(stack.metrics_port) >= timed_out + 2, 30, "two hung device calls given up on"
        )
        during = acknowledged(edge)
        _clear(stack.sim)
        recover(edge, during, "hung connections")
    check(watch, edge)
    slowest = max(a.seconds for a in watch.answers if a.path != "/readyz")
    print(f"\nslowest API answer while device calls hung: {slowest * 1000:.0f} ms")  # noqa: T201
    assert during >= before


def test_restart_mid_poll(stack: FaultStack, logs_dir: Path, tmp_path: Path) -> None:
    """SIGTERM while slow polls are in flight: clean exit, and the restart keeps every reading."""
    args = [*edge_args(stack.sim.url, tmp_path), "--upstream-timeout", "3s"]
    with start_iotedge(args, log_dir=logs_dir, env=edge_env()) as edge:
        wait_for(lambda: acknowledged(edge) > 0, 15, "first readings")
        _faults(stack.sim, latency_ms=1500)  # with a 1 s interval a poll is now always in flight
        time.sleep(2.5)
        before = acknowledged(edge)
        started = time.monotonic()
        code = edge.stop(signal.SIGTERM)
        print(f"\nshutdown mid-poll took {time.monotonic() - started:.2f} s")  # noqa: T201
        log = edge.log()
    # uvicorn shuts down cleanly, then re-raises the signal it caught: -15 is a clean exit here.
    assert code in (0, -signal.SIGTERM), log[-3000:]
    assert "Application shutdown complete" in log
    assert "Traceback" not in log
    _clear(stack.sim)
    with start_iotedge(args, log_dir=logs_dir, env=edge_env()) as edge:
        with watching(edge) as watch:
            assert acknowledged(edge) >= before
            recover(edge, acknowledged(edge), "restart mid-poll")
            time.sleep(1)
        check(watch, edge)


def test_disk_full(stack: FaultStack, logs_dir: Path, tmp_path: Path) -> None:
    """A file-size limit stops store writes: reads still answer, nothing 500s, writes resume.

    RLIMIT_FSIZE on the running edge makes every write past the current store size fail
    (EFBIG, as a full disk fails with ENOSPC); it needs no privilege, unlike mounting a
    small tmpfs. Lifting the limit is the disk being freed.
    """
    args = edge_args(stack.sim.url, tmp_path)
    with start_iotedge(args, log_dir=logs_dir, env=edge_env()) as edge:
        wait_for(lambda: acknowledged(edge) > 20, 15, "readings")
        pid = edge.popen.pid
        wal = tmp_path / "iotedge.sqlite3-wal"  # where every commit is appended
        _, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
        with watching(edge) as watch:
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (wal.stat().st_size, hard))
            try:
                time.sleep(1.5)  # the cycle in flight may still fit
                full_from = acknowledged(edge)
                time.sleep(5)
                during = acknowledged(edge)
                ready = httpx.get(edge.url + "/readyz", timeout=5)
            finally:
                resource.prlimit(pid, resource.RLIMIT_FSIZE, (hard, hard))
            recover(edge, during, "disk full")
        check(watch, edge)
        assert edge.popen.pid == pid
        assert during == full_from > 0, "readings kept being stored with the file-size limit on"
        assert ready.status_code == 503
        store_check = ready.json()["checks"]["store"]
        assert store_check["ok"] is False
        assert "store write failed" in str(store_check["last_error"])
        assert ready.json()["failing"] == ["store"], (
            "a full disk is the store's failure, not the device API's"
        )
        assert "store write failed" in edge.log()
        assert os.path.getsize(tmp_path / "iotedge.sqlite3") > 0
