"""The metrics port of a real edge: its own address, a token, and no per-object series unless asked."""

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from iotedge.config import load_edge_settings
from tests.conftest import edge_args, edge_env, wait_for
from tests.procs import Proc, free_port, start_iotedge

pytestmark = pytest.mark.integration

TOKEN = "scrape-token-0123456789abcdef"
OBJECT_SERIES = "iotedge_object_last_value{"


def _start(
    sim: Proc, logs_dir: Path, data_dir: Path, *extra: str, env: dict[str, str] | None = None
) -> Iterator[tuple[Proc, int]]:
    metrics_port = free_port()
    args = [*edge_args(sim.url, data_dir), "--metrics-port", str(metrics_port), *extra]
    with start_iotedge(args, log_dir=logs_dir, env={**edge_env(), **(env or {})}) as proc:
        yield proc, metrics_port


@pytest.fixture(scope="module")
def default_edge(
    sim: Proc, logs_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Proc, int]]:
    """An edge with the default metrics settings (loopback, no token, no per-object series)."""
    yield from _start(sim, logs_dir, tmp_path_factory.mktemp("metrics-default"))


@pytest.fixture(scope="module")
def token_edge(
    sim: Proc, logs_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Proc, int]]:
    """An edge whose metrics want a token (from the environment) and export per-object series."""
    env = {"IOTEDGE_METRICS_TOKEN": TOKEN}
    yield from _start(
        sim, logs_dir, tmp_path_factory.mktemp("metrics-token"), "--metrics-per-object", env=env
    )


def _scrape(port: int, headers: dict[str, str] | None = None, host: str = "127.0.0.1") -> httpx.Response:
    return httpx.get(f"http://{host}:{port}/metrics", headers=headers or {}, timeout=10)


def _ingested(port: int, headers: dict[str, str] | None = None) -> bool:
    for line in _scrape(port, headers).text.splitlines():
        if line.startswith("iotedge_readings_ingested_total "):
            return float(line.split()[1]) > 0
    return False


def test_metrics_address_is_its_own_and_private_by_default() -> None:
    """--metrics-host defaults to 127.0.0.1 whatever --host says; per-object series default off."""
    settings = load_edge_settings({}, host="0.0.0.0")
    assert (settings.metrics_host, settings.metrics_per_object, settings.metrics_token) == (
        "127.0.0.1",
        False,
        "",
    )


def test_no_object_series_by_default(default_edge: tuple[Proc, int]) -> None:
    """With data flowing, a credential-less scrape shows per-client aggregates and no per-object value."""
    _, port = default_edge
    wait_for(lambda: _ingested(port), 20, "readings to be ingested")
    text = _scrape(port).text
    assert text.count(OBJECT_SERIES) == 0  # the leaked-series count of issue 13: 12 before
    assert "device_" not in text
    assert 'iotedge_anomalies_open{client="client_1"' in text


def test_token_guards_the_metrics(token_edge: tuple[Proc, int]) -> None:
    """Without the token: 401 and nothing else. With it, as bearer or basic auth: every series."""
    _, port = token_edge
    bearer = {"authorization": f"Bearer {TOKEN}"}
    basic = {"authorization": "Basic " + base64.b64encode(f"prometheus:{TOKEN}".encode()).decode()}
    wait_for(lambda: _ingested(port, bearer), 20, "readings to be ingested")
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": f"Basic {TOKEN}"}):
        refused = _scrape(port, headers)
        assert (refused.status_code, refused.json()) == (401, {"error": "Unauthorized"})
        assert "edge_" not in refused.text
    for headers in (bearer, basic):
        allowed = _scrape(port, headers)
        assert allowed.status_code == 200
        assert allowed.text.count(OBJECT_SERIES) == 12  # opted in: 6 objects x 2 metrics


def test_metrics_host_is_separate_from_the_api(sim: Proc, logs_dir: Path, tmp_path: Path) -> None:
    """--metrics-host binds the metrics server alone: 127.0.0.2 serves them, 127.0.0.1 does not."""
    for edge, port in _start(sim, logs_dir, tmp_path, "--metrics-host", "127.0.0.2"):
        assert httpx.get(edge.url + "/healthz", timeout=10).status_code == 200
        assert _scrape(port, host="127.0.0.2").status_code == 200
        with pytest.raises(httpx.ConnectError):
            _scrape(port, host="127.0.0.1")
