"""EdgeMetrics on a fresh registry: names, pre-set labels, scrape-time callbacks, HTTP side."""

import asyncio
import base64
import contextlib
import gzip
import itertools
import math
import socket
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from iotedge.edge.container import ContainerSample
from iotedge.edge.metrics import (
    NOTIFICATION_OUTCOMES,
    REJECT_REASONS,
    UPSTREAM_OUTCOMES,
    EdgeMetrics,
)
from iotedge.edge.metrics_http import MetricsAccess, MetricsMiddleware, MetricsServer, serve_metrics
from iotedge.edge.upstream import UPSTREAM_ENDPOINTS
from tests.procs import free_port

SAMPLE = ContainerSample(
    cpu_percent=12.5,
    cpu_limit_cores=1.5,
    memory_bytes=100 << 20,
    memory_limit_bytes=256 << 20,
    memory_percent=39.0625,
    disk_used_bytes=10 << 30,
    disk_total_bytes=40 << 30,
    disk_percent=25.0,
    cpu_limited=True,
    memory_limited=True,
    cgroup="v2",
    taken_at=1.0,
)

EXPECTED_NAMES = [
    "edge_cpu_usage",
    "edge_memory_usage",
    "edge_disk_usage",
    "edge_cpu_limit_cores",
    "edge_memory_usage_bytes",
    "edge_memory_limit_bytes",
    "edge_disk_usage_bytes",
    "edge_disk_total_bytes",
    "edge_info",
    "iotedge_http_requests_total",
    "iotedge_http_request_duration_seconds_bucket",
    "iotedge_upstream_requests_total",
    "iotedge_upstream_request_duration_seconds_bucket",
    "iotedge_collector_cycle_duration_seconds_bucket",
    "iotedge_collector_cycles_total",
    "iotedge_collector_last_success_timestamp_seconds",
    "iotedge_collector_lag_seconds",
    "iotedge_collector_consecutive_failures",
    "iotedge_readings_ingested_total",
    "iotedge_readings_rejected_total",
    "iotedge_anomalies_total",
    "iotedge_anomalies_open",
    "iotedge_notifications_total",
    "iotedge_notifications_pending",
    "iotedge_store_size_bytes",
    "iotedge_object_last_value",
    "iotedge_objects",
    "process_start_time_seconds",
]


def scrape(registry: CollectorRegistry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of one scrape, keyed by (name, labels)."""
    text = generate_latest(registry).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def labels(**pairs: str) -> frozenset[tuple[str, str]]:
    """A label set as :func:`scrape` keys it."""
    return frozenset(pairs.items())


def fleet_values() -> list[tuple[str, str, str, float]]:
    """Two objects with one metric each."""
    return [
        ("device_1", "client_1", "temperature", 23.5),
        ("device_2", "client_1", "humidity", 55.0),
    ]


def make(**kwargs: Any) -> tuple[CollectorRegistry, EdgeMetrics]:
    """A fresh registry and the edge's metrics on it (per-object series on unless told)."""
    registry = CollectorRegistry()
    kwargs.setdefault("per_object", True)
    metrics = EdgeMetrics(registry=registry, edge_id="edge-a", clock=lambda: 1_800_000_000.0, **kwargs)
    return registry, metrics


def test_every_metric_is_exported_with_prometheus_names() -> None:
    """A scrape lists every documented series, with units and _total in the names."""
    registry, metrics = make(container=lambda: SAMPLE, latest_values=fleet_values)
    metrics.observe_http("/objects", "GET", 200, 0.003)
    metrics.observe_cycle(ok=True, duration_s=0.2, lag_s=1.5)
    metrics.record_ingested(12)
    metrics.init_anomaly_labels([("client_1", "temperature", "high")])
    names = {name for name, _ in scrape(registry)}
    missing = [name for name in EXPECTED_NAMES if name not in names]
    assert missing == []


def test_global_registry_is_never_used() -> None:
    """Two edges in one process register on their own registries, not the global one."""
    make()
    make()
    assert REGISTRY.get_sample_value("iotedge_readings_ingested_total") is None


def test_edge_info_names_the_edge() -> None:
    """edge_info is a constant 1 carrying the edge id and version."""
    registry, _ = make(version="9.9.9")
    samples = scrape(registry)
    assert samples[("edge_info", labels(edge_id="edge-a", version="9.9.9"))] == 1.0


def test_known_label_values_start_at_zero() -> None:
    """Outcomes, reasons and channels exist at 0 before anything happens, so rates work."""
    registry, _ = make()
    samples = scrape(registry)
    for endpoint in UPSTREAM_ENDPOINTS:
        for outcome in UPSTREAM_OUTCOMES:
            key = ("iotedge_upstream_requests_total", labels(endpoint=endpoint, outcome=outcome))
            assert samples[key] == 0.0
    for reason in REJECT_REASONS:
        assert samples[("iotedge_readings_rejected_total", labels(reason=reason))] == 0.0
    for channel in ("webhook", "email"):
        for outcome in NOTIFICATION_OUTCOMES:
            key = ("iotedge_notifications_total", labels(channel=channel, outcome=outcome))
            assert samples[key] == 0.0
    for outcome in ("ok", "error"):
        assert samples[("iotedge_collector_cycles_total", labels(outcome=outcome))] == 0.0


def test_anomaly_labels_preset_and_open_counts_read_at_scrape() -> None:
    """Pre-set anomaly series read 0; open counts come from the callback on each scrape."""
    open_now: list[tuple[str, str, str, int]] = []
    registry, metrics = make(open_anomalies=lambda: open_now)
    metrics.init_anomaly_labels(itertools.product(["client_1", "client_2"], ["temperature"], ["high", "low"]))
    samples = scrape(registry)
    key = labels(client="client_2", metric="temperature", rule="low")
    assert samples[("iotedge_anomalies_total", key)] == 0.0
    assert samples[("iotedge_anomalies_open", key)] == 0.0
    open_now.append(("client_2", "temperature", "low", 2))
    metrics.record_anomaly("client_2", "temperature", "low")
    samples = scrape(registry)
    assert samples[("iotedge_anomalies_open", key)] == 2.0
    assert samples[("iotedge_anomalies_total", key)] == 1.0


def test_latest_values_callback_runs_on_every_scrape() -> None:
    """Object values are read when scraped, so a scrape always shows the current ones."""
    calls = 0
    values = fleet_values()

    def latest() -> Iterable[tuple[str, str, str, float]]:
        nonlocal calls
        calls += 1
        return list(values)

    registry, _ = make(latest_values=latest)
    assert calls == 0  # registering must not call it
    first = scrape(registry)
    values[0] = ("device_1", "client_1", "temperature", 31.0)
    second = scrape(registry)
    key = (
        "iotedge_object_last_value",
        labels(object_id="device_1", client="client_1", metric="temperature"),
    )
    assert (first[key], second[key], calls) == (23.5, 31.0, 2)


def test_sources_bound_later_are_used() -> None:
    """bind() attaches sources after construction, as the lifespan does."""
    registry, metrics = make()
    assert ("edge_cpu_usage", frozenset()) not in scrape(registry)
    metrics.bind(container=lambda: SAMPLE, latest_values=fleet_values)
    samples = scrape(registry)
    assert samples[("edge_cpu_usage", frozenset())] == 12.5
    assert samples[("edge_memory_limit_bytes", frozenset())] == 256 << 20
    assert samples[("edge_disk_usage", frozenset())] == 25.0
    assert samples[("edge_cpu_limit_cores", frozenset())] == 1.5
    assert (
        "iotedge_object_last_value",
        labels(object_id="device_2", client="client_1", metric="humidity"),
    ) in samples


def test_unknown_cpu_rate_exports_no_series() -> None:
    """Before the second sample the CPU rate is unknown: no series rather than NaN or 0."""
    registry, _ = make(container=lambda: replace(SAMPLE, cpu_percent=math.nan))
    samples = scrape(registry)
    assert ("edge_cpu_usage", frozenset()) not in samples
    assert samples[("edge_memory_usage", frozenset())] == 39.0625


def test_out_of_set_labels_count_as_other() -> None:
    """An unexpected outcome, reason or method does not create a new series of its own."""
    registry, metrics = make()
    metrics.observe_upstream("/iot_data/{id}", "exploded", 0.1)
    metrics.record_rejected("cosmic_rays")
    metrics.observe_http("/x", "BREW", 418, 0.001)
    samples = scrape(registry)
    assert (
        samples[("iotedge_upstream_requests_total", labels(endpoint="/iot_data/{id}", outcome="other"))] == 1
    )
    assert samples[("iotedge_readings_rejected_total", labels(reason="other"))] == 1
    assert samples[("iotedge_http_requests_total", labels(route="/x", method="other", status="418"))] == 1
    assert not any(value == "exploded" or value == "cosmic_rays" for _, ls in samples for _, value in ls)


def test_cycle_success_stamps_last_success_and_failures() -> None:
    """A good cycle sets the last-success time from the clock; a bad one counts failures."""
    registry, metrics = make()
    metrics.observe_cycle(ok=True, duration_s=0.1, lag_s=2.0)
    metrics.observe_cycle(ok=False, duration_s=5.0, consecutive_failures=1)
    samples = scrape(registry)
    assert samples[("iotedge_collector_last_success_timestamp_seconds", frozenset())] == 1.8e9
    assert samples[("iotedge_collector_consecutive_failures", frozenset())] == 1
    assert samples[("iotedge_collector_lag_seconds", frozenset())] == 2.0
    assert samples[("iotedge_collector_cycle_duration_seconds_count", frozenset())] == 2


def test_middleware_labels_route_templates_and_statuses() -> None:
    """Requests are counted by route template; unknown paths and crashes stay bounded."""
    registry, metrics = make()
    app = FastAPI()

    @app.get("/objects/{object_id}")
    async def one_object(object_id: str) -> dict[str, str]:
        return {"id": object_id}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    app.add_middleware(MetricsMiddleware, metrics=metrics)

    async def scenario() -> list[int]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://edge") as client:
            answers = [await client.get(f"/objects/device_{i}") for i in range(3)]
            answers.append(await client.get("/no/such/path"))
            answers.append(await client.get("/boom"))
            return [answer.status_code for answer in answers]

    assert asyncio.run(scenario()) == [200, 200, 200, 404, 500]
    samples = scrape(registry)
    route = labels(route="/objects/{object_id}", method="GET", status="200")
    assert samples[("iotedge_http_requests_total", route)] == 3
    assert (
        samples[("iotedge_http_requests_total", labels(route="unmatched", method="GET", status="404"))] == 1
    )
    assert samples[("iotedge_http_requests_total", labels(route="/boom", method="GET", status="500"))] == 1
    histogram = (
        "iotedge_http_request_duration_seconds_count",
        labels(route="/objects/{object_id}", method="GET"),
    )
    assert samples[histogram] == 3
    assert not any("device_1" in value for _, ls in samples for _, value in ls)


def test_metrics_server_serves_text_and_gzip_on_loopback() -> None:
    """The server answers /metrics in the text format, gzip on request, 404/405 otherwise."""
    registry, _ = make(container=lambda: SAMPLE, latest_values=fleet_values)

    async def scenario() -> tuple[httpx.Response, httpx.Response, int, int, int]:
        async with (
            MetricsServer(registry, host="127.0.0.1", port=0) as server,
            httpx.AsyncClient() as client,
        ):
            plain = await client.get(server.url, headers={"accept-encoding": "identity"})
            zipped = await client.get(server.url, headers={"accept-encoding": "gzip"})
            missing = await client.get(server.url.replace("/metrics", "/nope"))
            post = await client.post(server.url)
            port = server.port
        return plain, zipped, missing.status_code, post.status_code, port

    plain, zipped, missing, post, port = asyncio.run(scenario())
    assert plain.status_code == 200
    assert plain.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "edge_cpu_usage 12.5" in plain.text
    assert "_created" not in plain.text
    assert zipped.headers["content-encoding"] == "gzip"
    stable = [line for line in plain.text.splitlines() if "process_" not in line]
    assert [line for line in zipped.text.splitlines() if "process_" not in line] == stable
    assert (missing, post) == (404, 405)
    assert port > 0


def test_metrics_server_releases_its_port() -> None:
    """After stop() the same port can be bound again (the lifespan restarts cleanly)."""
    registry, _ = make()

    async def scenario() -> int:
        first = MetricsServer(registry, host="127.0.0.1", port=0)
        await first.start()
        port = first.port
        await first.stop()
        async with (
            MetricsServer(registry, host="127.0.0.1", port=port) as second,
            httpx.AsyncClient() as client,
        ):
            return (await client.get(second.url)).status_code

    assert asyncio.run(scenario()) == 200


def test_port_in_use_fails_at_start() -> None:
    """A taken port is an OSError from start(), not a silent background failure."""
    registry, _ = make()

    async def scenario() -> None:
        async with MetricsServer(registry, host="127.0.0.1", port=0) as first:
            with pytest.raises(OSError, match="in use"):
                await MetricsServer(registry, host="127.0.0.1", port=first.port).start()

    asyncio.run(scenario())


def test_size_with_ten_thousand_objects() -> None:
    """10,000 objects x 2 metrics stay under 2.5 MB of text and 150 kB gzipped."""
    values = [
        (f"device_{i}", f"client_{i // 100 + 1}", metric, 20.0 + i % 10)
        for i in range(1, 10_001)
        for metric in ("temperature", "battery_level")
    ]
    registry, _ = make(container=lambda: SAMPLE, latest_values=lambda: values)
    body = generate_latest(registry)
    assert body.count(b"\niotedge_object_last_value{") == 20_000
    assert len(body) < 2_500_000
    assert len(gzip.compress(body, compresslevel=1)) < 150_000


def test_serve_metrics_runs_until_cancelled() -> None:
    """serve_metrics serves as a supervised task and frees its port when cancelled."""
    registry, _ = make()
    port = free_port()

    async def scenario() -> tuple[int, bool]:
        task = asyncio.create_task(serve_metrics(registry, host="127.0.0.1", port=port))
        status = 0
        async with httpx.AsyncClient() as client:
            for _ in range(200):  # bounded: about 2 s
                with contextlib.suppress(httpx.ConnectError):
                    status = (await client.get(f"http://127.0.0.1:{port}/metrics")).status_code
                    break
                await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with socket.create_server(("127.0.0.1", port)):  # free again
            return status, task.cancelled()

    assert asyncio.run(scenario()) == (200, True)


def test_per_object_series_are_off_by_default() -> None:
    """Without per_object=True no series names an object, even with a latest-values source."""
    registry = CollectorRegistry()
    EdgeMetrics(registry=registry, edge_id="edge-a", latest_values=fleet_values)
    samples = scrape(registry)
    assert not [name for name, _ in samples if name == "iotedge_object_last_value"]
    assert not any("device_" in value for _, ls in samples for _, value in ls)


@pytest.mark.parametrize(
    ("header", "allowed"),
    [
        pytest.param(None, False, id="no-header"),
        pytest.param(b"Bearer s3cret-token", True, id="bearer"),
        pytest.param(b"bearer  s3cret-token ", True, id="bearer-case-and-spaces"),
        pytest.param(b"Bearer s3cret-tokeN", False, id="bearer-wrong"),
        pytest.param(b"Basic " + base64.b64encode(b"prometheus:s3cret-token"), True, id="basic"),
        pytest.param(b"Basic " + base64.b64encode(b"someone:s3cret-token"), False, id="basic-wrong-user"),
        pytest.param(b"Basic " + base64.b64encode(b"prometheus:nope"), False, id="basic-wrong-password"),
        pytest.param(b"Basic %%%", False, id="basic-garbage"),
        pytest.param(b"Token s3cret-token", False, id="other-scheme"),
    ],
)
def test_metrics_access_accepts_bearer_or_basic(header: bytes | None, allowed: bool) -> None:
    """The token opens the metrics as a bearer token or as the basic-auth password, nothing else."""
    assert MetricsAccess(token="s3cret-token").allows(header) is allowed
    assert MetricsAccess().allows(header) is True  # no token configured: open (loopback default)


def test_metrics_server_wants_the_token() -> None:
    """With a token the server answers 401 JSON with a challenge, and 200 to the token."""
    registry, _ = make(container=lambda: SAMPLE)

    async def scenario() -> tuple[httpx.Response, httpx.Response]:
        access = MetricsAccess(token="s3cret-token")
        async with (
            MetricsServer(registry, host="127.0.0.1", port=0, access=access) as server,
            httpx.AsyncClient() as client,
        ):
            refused = await client.get(server.url)
            allowed = await client.get(server.url, headers={"authorization": "Bearer s3cret-token"})
        return refused, allowed

    refused, allowed = asyncio.run(scenario())
    assert (refused.status_code, refused.json()) == (401, {"error": "Unauthorized"})
    assert "Bearer" in refused.headers["www-authenticate"]
    assert "edge_cpu_usage" not in refused.text
    assert allowed.status_code == 200 and "edge_cpu_usage 12.5" in allowed.text


class _Families:
    """Already collected families, as a collector (to render them again)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def test_served_text_is_the_librarys_to_the_byte() -> None:
    """The metrics server's own rendering of row families gives generate_latest's exact text.

    Label values with quotes, backslashes, newlines and non-ASCII characters, counters and
    gauges of every kind the edge exports, special values, a sample with a timestamp (left
    to the library) and histograms.
    """
    odd = 'a"b\\c\nd é'
    values = [(f"device_{odd}", odd, "temperature", 23.5), ("device_2", "client_1", "humidity", math.inf)]
    registry, metrics = make(container=lambda: SAMPLE, latest_values=lambda: values)
    metrics.init_anomaly_labels([(odd, "temperature", "zscore"), ("client_1", "humidity", "humidity_high")])
    metrics.record_anomaly(odd, "temperature", "zscore")
    metrics.observe_upstream("/iot_data/{id}", "ok", 0.02)
    metrics.observe_upstream("/iot_data/{id}", "surprise", 0.5)
    metrics.observe_cycle(ok=True, duration_s=1.5, lag_s=2.0)
    stamped = GaugeMetricFamily("bench_stamped", "A sample with a timestamp.")
    stamped.add_metric([], 1.0, timestamp=1_800_000_000.5)
    registry.register(_Families([stamped]))

    async def scenario() -> str:
        async with (
            MetricsServer(registry, host="127.0.0.1", port=0) as server,
            httpx.AsyncClient() as client,
        ):
            return (await client.get(server.url, headers={"accept-encoding": "identity"})).text

    served = asyncio.run(scenario())
    families = list(registry.collect())
    for family in families:
        family.samples = [s for s in family.samples if not s.name.endswith("_created")]
    expected = generate_latest(_Families(families)).decode()

    def stable(text: str) -> list[str]:
        return [line for line in text.splitlines() if not line.startswith("process_")]

    assert stable(served) == stable(expected)
    assert (
        'iotedge_anomalies_total{client="a\\"b\\\\c\\nd é",metric="temperature",rule="zscore"} 1.0' in served
    )
    assert "bench_stamped 1.0 1800000000500" in served
