"""Shared fixtures: a real simulator process on loopback, per-test directories."""

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.procs import Proc, loopback_http, start_iotedge

T = TypeVar("T")

# With IOTEDGE_REQUIRE_ALL=1 (set by .ci/run) a test whose real component is missing
# fails instead of skipping, so nothing is skipped silently in CI.
REQUIRE_ALL = os.environ.get("IOTEDGE_REQUIRE_ALL") == "1"


def require(condition: bool, why: str) -> None:
    """Skip locally, fail in CI, when a real component a test needs is missing."""
    if condition:
        return
    if REQUIRE_ALL:
        pytest.fail(f"required component missing: {why}")
    pytest.skip(why)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules with a test marked slow first, each module's tests in their own order.

    `make test` hands whole modules to its workers (``--dist loadfile``) in this order
    (``--no-loadscope-reorder``): the longest start first and the short ones fill in at the end.
    """
    slow = {item.path for item in items if item.get_closest_marker("slow") is not None}
    items.sort(key=lambda item: item.path not in slow)


@pytest.fixture(scope="session")
def logs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where subprocess logs go for the whole session."""
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def sim(logs_dir: Path) -> Iterator[Proc]:
    """A real simulator with the default fleet and seed 42, shared by the session."""
    with start_iotedge(["sim", "--seed", "42"], log_dir=logs_dir) as proc:
        yield proc


KEYS = {
    "client_1": "test-key-client-1-0123456789",
    "client_2": "test-key-client-2-0123456789",
    "client_3": "test-key-client-3-0123456789",
    "*": "test-key-cloud-all-0123456789",
}
"""API keys every test edge accepts (client -> key; '*' is the cloud scope)."""

TEST_RULES = {
    "thresholds": [
        {"metric": "temperature", "above": 30.0},
        {"metric": "temperature", "below": 20.0},
        {"metric": "humidity", "above": 80},
        {"metric": "humidity", "below": 40},
        {"metric": "activity_level", "above": 95},
        {"metric": "battery_level", "below": 20, "severity": "critical"},
    ],
    "stuck": {"readings": 8},
}
"""The default rules, with a stuck rule short enough for one-second test buckets (but long
enough that integer metrics rarely repeat that often by chance)."""


@dataclass
class Stack:
    """A simulator and an edge polling it, both real processes."""

    sim: Proc
    edge: Proc
    data_dir: Path
    started_at: float

    def get(self, path: str, client: str = "client_1", **params: Any) -> httpx.Response:
        """GET on the edge with ``client``'s key."""
        headers = {"x-api-key": KEYS[client]}
        return loopback_http().get(self.edge.url + path, params=params, headers=headers, timeout=10)


def edge_env() -> dict[str, str]:
    """Environment giving a test edge the test keys, with no cap on failed logins or requests.

    Every test request comes from 127.0.0.1, and many send bad keys on purpose: the
    per-address cap would turn later tests' answers into 429. Tests on a keep-alive client
    also outrun the per-key budget. tests/security/test_keys.py tests both limits with flags.
    """
    return {
        "IOTEDGE_API_KEYS": ",".join(f"{client}={key}" for client, key in KEYS.items()),
        "IOTEDGE_AUTH_FAILURES": "0",
        "IOTEDGE_RATE_LIMIT": "0",
    }


def edge_args(sim_url: str, data_dir: Path, *extra: str) -> list[str]:
    """Command line of a fast-polling test edge."""
    rules = data_dir / "rules.json"
    rules.parent.mkdir(parents=True, exist_ok=True)
    rules.write_text(json.dumps(TEST_RULES))
    return [
        "edge",
        "--upstream", sim_url,
        "--data-dir", str(data_dir),
        "--rules-file", str(rules),
        "--poll-interval", "1s",
        "--upstream-timeout", "1s",
        "--metrics-port", "0",
        "--edge-id", "test-edge",
        *extra,
    ]  # fmt: skip


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` every 0.1 s until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def wait_for_answer(fetch: Callable[[], T], accept: Callable[[T], bool], timeout: float, what: str) -> T:
    """Call ``fetch`` every 0.1 s until ``accept`` takes what it returned: that answer (to check
    further, where asking again could take long or answer otherwise). Fail after ``timeout`` seconds."""
    answers: list[T] = []

    def accepted() -> bool:
        answers.append(fetch())
        return accept(answers[-1])

    wait_for(accepted, timeout, what)
    return answers[-1]


@pytest.fixture(scope="module")
def stack(
    request: pytest.FixtureRequest, logs_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """A fast simulator (1 s buckets, frequent anomalies) and an edge polling it every second.

    The fleet has ``SIM_CLIENTS`` clients (a module constant, default 20) of two objects each.
    """
    data_dir = tmp_path_factory.mktemp("edge")
    sim_args = ["sim", "--seed", "11", "--interval", "1", "--anomaly-rate", "0.6", "--anomaly-slot", "30"]
    sim_args += ["--clients", str(getattr(request.module, "SIM_CLIENTS", 20))]
    with start_iotedge(sim_args, log_dir=logs_dir) as sim_proc:
        started = time.time()
        with start_iotedge(edge_args(sim_proc.url, data_dir), log_dir=logs_dir, env=edge_env()) as edge_proc:
            result = Stack(sim=sim_proc, edge=edge_proc, data_dir=data_dir, started_at=started)
            wait_for(lambda: result.get("/readyz").status_code == 200, 20, "edge ready")
            yield result
