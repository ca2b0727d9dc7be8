"""A real Prometheus scrapes the metrics server and evaluates the shipped alert rules on it."""

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from iotedge.edge.container import ContainerMonitor, ContainerSampler
from iotedge.edge.metrics import EdgeMetrics
from iotedge.edge.metrics_http import MetricsServer
from tests.prometheus import Prometheus, start_prometheus

pytestmark = pytest.mark.integration

VALUES = [
    ("device_1", "client_1", "temperature", 23.5),
    ("device_1", "client_1", "battery_level", 87.0),
]


@contextlib.contextmanager
def metrics_server_thread(metrics: EdgeMetrics, monitor: ContainerMonitor) -> Iterator[str]:
    """Serve ``metrics`` (and sample the container) on an event loop in a thread."""
    ready = threading.Event()
    address: list[str] = []
    loop_box: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    async def main() -> None:
        stop = asyncio.Event()
        loop_box.append((asyncio.get_running_loop(), stop))
        sampling = asyncio.create_task(monitor.run())
        async with MetricsServer(metrics.registry, host="127.0.0.1", port=0) as server:
            address.append(f"127.0.0.1:{server.port}")
            ready.set()
            await stop.wait()
        sampling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampling

    thread = threading.Thread(target=asyncio.run, args=(main(),), name="metrics-server")
    thread.start()
    try:
        assert ready.wait(10), "metrics server did not start"
        yield address[0]
    finally:
        if loop_box:
            loop, stop = loop_box[0]
            loop.call_soon_threadsafe(stop.set)
        thread.join(10)


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """Prometheus scraping a metrics server fed with a container monitor and two values."""
    registry = CollectorRegistry()
    monitor = ContainerMonitor(ContainerSampler(disk_path=Path.cwd()), interval=1.0)
    metrics = EdgeMetrics(
        registry=registry,
        edge_id="edge-test",
        container=lambda: monitor.latest,
        latest_values=lambda: VALUES,
    )
    metrics.objects.set(1)
    metrics.observe_cycle(ok=True, duration_s=0.05, lag_s=0.5)
    metrics.init_anomaly_labels([("client_1", "temperature", "high")])
    workdir = tmp_path_factory.mktemp("prometheus")
    with (
        metrics_server_thread(metrics, monitor) as target,
        start_prometheus([target], workdir=workdir) as prometheus,
    ):
        prometheus.wait_for('up{job="iotedge-edge"} == 1')
        yield prometheus


def value(result: list[dict[str, object]]) -> float:
    """The value of a one-series instant vector."""
    assert len(result) == 1, result
    sample = result[0]["value"]
    assert isinstance(sample, list)
    return float(sample[1])


def test_container_gauges_reach_prometheus(scraped: Prometheus) -> None:
    """The course's gauges and their byte/core twins arrive with plausible values."""
    cpu = value(scraped.wait_for("edge_cpu_usage"))  # needs two samples, one second apart
    assert 0 <= cpu <= 100 * 64
    assert 0 < value(scraped.query("edge_memory_usage")) <= 100
    assert 0 < value(scraped.query("edge_disk_usage")) <= 100
    assert value(scraped.query("edge_cpu_limit_cores")) > 0
    memory = value(scraped.query("edge_memory_usage_bytes"))
    assert 0 < memory <= value(scraped.query("edge_memory_limit_bytes"))


def test_pipeline_series_and_labels_reach_prometheus(scraped: Prometheus) -> None:
    """edge_info, pre-set counters and per-object values are queryable by their labels."""
    info = scraped.query("edge_info")
    assert info[0]["metric"]["edge_id"] == "edge-test"
    zero = scraped.query('iotedge_upstream_requests_total{endpoint="data", outcome="timeout"}')
    assert value(zero) == 0
    temperature = scraped.query(
        'iotedge_object_last_value{object_id="device_1", metric="temperature"}'
    )
    assert value(temperature) == 23.5
    assert value(scraped.query('iotedge_anomalies_open{client="client_1"}')) == 0
    assert not scraped.query('{__name__=~".+_created"}')


def test_shipped_rules_evaluate_without_errors(scraped: Prometheus) -> None:
    """Every alert rule evaluates cleanly on real data; the pipeline ones stay quiet."""
    rules: list[dict[str, Any]] = []
    for _ in range(120):  # bounded: about 30 s
        rules = [rule for group in scraped.api("rules")["groups"] for rule in group["rules"]]
        if rules and all(rule.get("lastEvaluation", "").startswith("20") for rule in rules):
            break
        time.sleep(0.25)
    assert len(rules) == 7
    assert {rule["name"]: rule["health"] for rule in rules} == {
        rule["name"]: "ok" for rule in rules
    }
    # The Edge*High rules follow this machine's real load, so only these must be quiet.
    quiet = {"EdgeDown", "DeviceApiFailing", "CollectorStalled", "AnomalyRateHigh"}
    assert [
        rule["name"] for rule in rules if rule["name"] in quiet and rule["state"] != "inactive"
    ] == []
