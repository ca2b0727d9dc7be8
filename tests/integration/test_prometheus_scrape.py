"""A real Prometheus scrapes the metrics server (token, TLS) and evaluates the shipped alert rules."""

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import edge_args, edge_env
from tests.procs import Proc, free_port, start_iotedge
from tests.prometheus import Prometheus, start_prometheus
from tests.security.helpers import cli

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def secrets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The scrape token file and a development PKI (`iotedge certs`) for the metrics port."""
    out = tmp_path_factory.mktemp("scrape-secrets")
    (out / "metrics-token").write_text("scrape-token-" + "0123456789" * 3 + "\n")
    cli("certs", "--out", str(out / "pki"), "--hosts", "localhost,127.0.0.1")
    return out


@pytest.fixture(scope="module")
def edge_with_metrics(
    sim: Proc, secrets: Path, logs_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Proc, int]]:
    """A real edge polling the session simulator, serving metrics over TLS with a token."""
    metrics_port = free_port()
    pki = secrets / "pki"
    args = [*edge_args(sim.url, tmp_path_factory.mktemp("edge")), "--metrics-port", str(metrics_port)]
    args += ["--metrics-token-file", str(secrets / "metrics-token"), "--metrics-per-object"]
    args += ["--metrics-certfile", str(pki / "server.pem"), "--metrics-keyfile", str(pki / "server-key.pem")]
    with start_iotedge(args, log_dir=logs_dir, env=edge_env()) as edge:
        yield edge, metrics_port


@pytest.fixture(scope="module")
def scraped(
    edge_with_metrics: tuple[Proc, int], secrets: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    """A real Prometheus scraping the real edge's metrics port, with the token, over TLS."""
    _, metrics_port = edge_with_metrics
    workdir = tmp_path_factory.mktemp("prometheus")
    with start_prometheus(
        [f"127.0.0.1:{metrics_port}"],
        workdir=workdir,
        token_file=secrets / "metrics-token",
        ca_file=secrets / "pki" / "ca.pem",
    ) as prometheus:
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
    assert info[0]["metric"]["edge_id"] == "test-edge"
    zero = scraped.query('iotedge_upstream_requests_total{endpoint="/iot_data/{id}", outcome="timeout"}')
    assert value(zero) == 0
    ok = scraped.wait_for('iotedge_upstream_requests_total{endpoint="/iot_data/{id}", outcome="ok"} > 0')
    assert value(ok) > 0
    temperature = scraped.wait_for('iotedge_object_last_value{object_id="device_1", metric="temperature"}')
    assert 20 <= value(temperature) <= 45
    assert value(scraped.wait_for("iotedge_readings_ingested_total > 0")) > 0
    assert value(scraped.query("iotedge_objects")) == 6
    assert value(scraped.query("iotedge_store_size_bytes")) > 0
    assert value(scraped.wait_for("iotedge_collector_last_success_timestamp_seconds > 0")) > time.time() - 120
    assert scraped.query("iotedge_collector_lag_seconds")
    # Pre-set from the catalogue, so the series exists (>= 0: the simulator may inject a gap).
    offline = scraped.query('iotedge_anomalies_open{client="client_1", rule="offline", metric="temperature"}')
    assert value(offline) >= 0
    assert not scraped.query('{__name__=~".+_created"}')


def test_request_metrics_follow_api_traffic(edge_with_metrics: tuple[Proc, int], scraped: Prometheus) -> None:
    """API requests show up by route template and status, never by raw path."""
    import httpx

    from tests.conftest import KEYS

    edge, _ = edge_with_metrics
    for object_id in ("device_1", "device_2", "nope"):
        httpx.get(edge.url + f"/objects/{object_id}", headers={"x-api-key": KEYS["*"]})
    found = scraped.wait_for('iotedge_http_requests_total{route="/objects/{object_id}", status="404"} > 0')
    assert value(found) >= 1
    assert not scraped.query('iotedge_http_requests_total{route=~".*device_.*"}')


def test_shipped_rules_evaluate_without_errors(scraped: Prometheus) -> None:
    """Every alert rule evaluates cleanly on real data; the pipeline ones stay quiet."""
    rules: list[dict[str, Any]] = []
    for _ in range(120):  # bounded: about 30 s
        rules = [rule for group in scraped.api("rules")["groups"] for rule in group["rules"]]
        if rules and all(rule.get("lastEvaluation", "").startswith("20") for rule in rules):
            break
        time.sleep(0.25)
    assert len(rules) == 7
    assert {rule["name"]: rule["health"] for rule in rules} == {rule["name"]: "ok" for rule in rules}
    # The Edge*High rules follow this machine's real load, so only these must be quiet.
    quiet = {"EdgeDown", "DeviceApiFailing", "CollectorStalled", "AnomalyRateHigh"}
    assert [rule["name"] for rule in rules if rule["name"] in quiet and rule["state"] != "inactive"] == []
