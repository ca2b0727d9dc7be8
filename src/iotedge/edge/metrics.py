"""The edge's Prometheus metrics: one registry per app, known labels pre-set, state read on scrape.

Everything lives in a :class:`EdgeMetrics` built on a registry the caller owns (never the
process-global one), so two edges in one test process never share a counter.

Three kinds of values:

* **events** (requests, upstream calls, collector cycles, readings, anomalies opened,
  notifications) are counters and histograms the code updates as things happen, through
  the ``observe_*``/``record_*`` helpers, which keep label values in bounded sets;
* **state** (latest value per object, open anomalies, container resources) is read by
  custom collectors *at scrape time* from callbacks, so it never drifts and nothing on
  the hot path writes it;
* **plain gauges** (pending notifications, store size, objects, collector lag) may be ``set()`` by
  the code that knows them or given a callback with ``Gauge.set_function``.

Label cardinality: every label comes from a bounded set (route templates, methods,
statuses, outcomes, reasons, channels, clients x metrics x rules), except
``iotedge_object_last_value``, which has one series per (object, metric) the fleet reports:
two per object for the course's types, so 20,000 series for 10,000 objects. That one names
every client's devices, so it is exported only when asked for (``per_object=True``).
"""

import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample

from iotedge import __version__
from iotedge.config_notify import CHANNELS
from iotedge.edge.container import ContainerSample
from iotedge.edge.normalise import REJECTION_REASONS
from iotedge.edge.upstream import UPSTREAM_ENDPOINTS
from iotedge.guard import CONNECTION_EVENTS, TLS_REASONS

__all__ = [
    "HTTP_METHODS",
    "NOTIFICATION_OUTCOMES",
    "REJECT_REASONS",
    "UPSTREAM_OUTCOMES",
    "ContainerSource",
    "EdgeMetrics",
    "LabelledRows",
    "LatestValues",
    "OpenAnomalies",
]

_log = logging.getLogger(__name__)

UPSTREAM_OUTCOMES = ("ok", "timeout", "connect", "status", "payload", "circuit_open")
REJECT_REASONS = (*REJECTION_REASONS, "not_json")  # a poll answer that is not JSON is rejected whole
# sent: delivered; failed: one attempt failed (it will be retried); dropped: gave up;
# suppressed: held back by noise control (cooldown, flapping) or routing.
NOTIFICATION_OUTCOMES = ("sent", "failed", "dropped", "suppressed")
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER = "other"  # the label value for anything outside a bounded set
_MAX_WARNINGS = 100  # distinct unknown label values logged, so the log stays bounded too

# The API answers from its store in milliseconds; the device API may take seconds.
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
UPSTREAM_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CYCLE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

LatestValues = Callable[[], Iterable[tuple[str, str, str, float]]]
"""Returns (object_id, client, metric, value) for the latest reading of each object."""
OpenAnomalies = Callable[[], Iterable[tuple[str, str, str, int]]]
"""Returns (client, metric, rule, count) of anomaly events still open."""
ContainerSource = Callable[[], ContainerSample | None]
"""Returns the latest container sample, or None before the first one."""

# (metric name, help, ContainerSample attribute)
_CONTAINER_GAUGES = (
    ("edge_cpu_usage", "CPU use of the edge container, percent of its limit.", "cpu_percent"),
    ("edge_memory_usage", "Memory use (working set), percent of the limit.", "memory_percent"),
    ("edge_disk_usage", "Disk use of the data directory's file system, percent.", "disk_percent"),
    ("edge_cpu_limit_cores", "CPUs the container may use (the host's without a limit).",
     "cpu_limit_cores"),
    ("edge_memory_usage_bytes", "Memory working set of the container.", "memory_bytes"),
    ("edge_memory_limit_bytes", "Memory limit of the container (the host's without one).",
     "memory_limit_bytes"),
    ("edge_disk_usage_bytes", "Used bytes of the data directory's file system.",
     "disk_used_bytes"),
    ("edge_disk_total_bytes", "Size of the data directory's file system.", "disk_total_bytes"),
)  # fmt: skip


class _ContainerCollector:
    """The course's edge_* gauges, from the latest background sample (no I/O on scrape)."""

    def __init__(self, source: Callable[[], ContainerSource | None]) -> None:
        self._source = source

    def describe(self) -> Iterator[Metric]:
        for name, doc, _ in _CONTAINER_GAUGES:
            yield GaugeMetricFamily(name, doc)

    def collect(self) -> Iterator[Metric]:
        source = self._source()
        sample = source() if source else None
        for name, doc, attribute in _CONTAINER_GAUGES:
            family = GaugeMetricFamily(name, doc)
            value = float(getattr(sample, attribute)) if sample else math.nan
            if math.isfinite(value):  # no CPU rate before the second sample: no series
                family.add_metric([], value)
            yield family


class LabelledRows(Metric):
    """A counter or gauge family held as label values -> value, without a Sample per series.

    The families with one series per object or per (client, metric, rule) hold 15,000 to
    20,000 series at 10,000 objects; as Samples (a labels dict each) one scrape allocated
    about 10 MB of small objects on top of the edge, interleaved with a cycle's (so the
    allocator kept much of it). ``rows`` is one dict (a single block); the metrics server
    writes the text from it; anything else that reads ``samples`` gets them built on first
    use. Assigning an empty list (as ``Metric.__init__`` does) leaves them to the rows.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        typ: str,
        labels: Sequence[str],
        rows: Mapping[tuple[str, ...], float],
    ) -> None:
        self.labelnames = tuple(labels)
        self.rows = rows
        self._built: list[Sample] | None = None
        super().__init__(name, documentation, typ)

    @property
    def sample_name(self) -> str:
        """The name every sample carries (``_total`` added to a counter's)."""
        return self.name + "_total" if self.type == "counter" else self.name

    @property
    def samples(self) -> list[Sample]:
        if self._built is None:
            name, labelnames = self.sample_name, self.labelnames
            self._built = [
                Sample(name, dict(zip(labelnames, values, strict=True)), value)
                for values, value in self.rows.items()
            ]
        return self._built

    @samples.setter
    def samples(self, value: list[Sample]) -> None:
        self._built = value or None


_LABELS = ("client", "metric", "rule")


class _ObjectValuesCollector:
    """``iotedge_object_last_value``: the latest reading of each object and metric."""

    NAME = "iotedge_object_last_value"
    DOC = "Latest reading of each object and metric, as reported by the device."
    LABELS = ("object_id", "client", "metric")

    def __init__(self, source: Callable[[], LatestValues | None]) -> None:
        self._source = source

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(self.NAME, self.DOC, labels=self.LABELS)

    def collect(self) -> Iterator[Metric]:
        source = self._source()
        values = source() if source else ()
        rows: dict[tuple[str, ...], float] = {
            (object_id, client, metric): value for object_id, client, metric, value in values
        }
        yield LabelledRows(self.NAME, self.DOC, "gauge", self.LABELS, rows)


class _AnomaliesOpenedCollector:
    """``iotedge_anomalies_total``: events opened per (client, metric, rule), from a plain dict.

    Not a labelled Counter: at 10,000 objects the pre-set combinations number about 15,000,
    and a Counter child each (a lock, two values) held 12 MB and took a third of a scrape.
    """

    NAME = "iotedge_anomalies"
    DOC = "Anomaly events opened."

    def __init__(self, counts: dict[tuple[str, ...], int]) -> None:
        self._counts = counts

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self.NAME, self.DOC, labels=_LABELS)

    def collect(self) -> Iterator[Metric]:
        yield LabelledRows(self.NAME, self.DOC, "counter", _LABELS, self._counts.copy())


class _OpenAnomaliesCollector:
    """``iotedge_anomalies_open``: open events per (client, metric, rule), zero when none."""

    NAME = "iotedge_anomalies_open"
    DOC = "Anomaly events that have started and not ended."

    def __init__(
        self,
        source: Callable[[], OpenAnomalies | None],
        known: Callable[[], Iterable[tuple[str, ...]]],
    ) -> None:
        self._source = source
        self._known = known

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(self.NAME, self.DOC, labels=_LABELS)

    def collect(self) -> Iterator[Metric]:
        counts: dict[tuple[str, ...], int] = dict.fromkeys(self._known(), 0)
        source = self._source()
        for client, metric, rule, count in source() if source else ():
            counts[(client, metric, rule)] = counts.get((client, metric, rule), 0) + count
        yield LabelledRows(self.NAME, self.DOC, "gauge", _LABELS, counts)


class EdgeMetrics:
    """Every metric the edge exports, registered on ``registry``.

    Args:
        registry: the registry to register on; build one per app.
        edge_id: this edge's name, exported as ``edge_info{edge_id, version}``.
        version: the version exported in ``edge_info``.
        container: returns the latest :class:`ContainerSample` (e.g. a monitor's ``latest``).
        latest_values: returns (object_id, client, metric, value) per object and metric.
        open_anomalies: returns (client, metric, rule, count) of open anomaly events.
        upstream_endpoints: device API endpoint names pre-set with every outcome.
        reject_reasons: reading rejection reasons pre-set at zero.
        channels: notification channels pre-set with every outcome.
        clock: wall-clock seconds, for the last-success timestamp.
        per_object: export ``iotedge_object_last_value`` (one series per object and metric).

    Callbacks run on the thread that scrapes (the event loop with :class:`MetricsServer`),
    so they must only read memory; they can also be given later with :meth:`bind`.
    """

    def __init__(
        self,
        *,
        registry: CollectorRegistry,
        edge_id: str,
        version: str = __version__,
        container: ContainerSource | None = None,
        latest_values: LatestValues | None = None,
        open_anomalies: OpenAnomalies | None = None,
        upstream_endpoints: Sequence[str] = UPSTREAM_ENDPOINTS,
        reject_reasons: Sequence[str] = REJECT_REASONS,
        channels: Sequence[str] = CHANNELS,
        clock: Callable[[], float] = time.time,
        per_object: bool = False,
    ) -> None:
        self.registry = registry
        self.edge_id = edge_id
        self._clock = clock
        self._container = container
        self._latest_values = latest_values
        self._open_anomalies = open_anomalies
        # (client, metric, rule) -> events opened; its keys are the pre-set label sets too.
        self._anomaly_counts: dict[tuple[str, ...], int] = {}
        self._endpoints = frozenset(upstream_endpoints)
        self._reasons = frozenset(reject_reasons)
        self._channels = frozenset(channels)
        self._warned: set[tuple[str, str]] = set()
        # (route, method, status) -> its request counter and duration histogram children.
        self._http_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        # (endpoint, outcome) -> its children: a device API call costs two labels() lookups less.
        self._upstream_children: dict[tuple[str, str], tuple[Counter, Histogram]] = {}

        def gauge(name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
            return Gauge(name, doc, labelnames=labels, registry=registry)

        def counter(name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
            return Counter(name, doc, labelnames=labels, registry=registry)

        def histogram(name: str, doc: str, buckets: Sequence[float], labels: Sequence[str] = ()) -> Histogram:
            return Histogram(name, doc, labelnames=labels, buckets=buckets, registry=registry)

        self.info = gauge("edge_info", "Constant 1, labelled with this edge.", ("edge_id", "version"))
        self.info.labels(edge_id=edge_id, version=version).set(1)

        self.http_requests = counter(
            "iotedge_http_requests", "API requests answered.", ("route", "method", "status")
        )
        self.http_duration = histogram(
            "iotedge_http_request_duration_seconds",
            "Time to answer an API request, until the last byte is sent.",
            HTTP_BUCKETS,
            ("route", "method"),
        )
        self.upstream_requests = counter(
            "iotedge_upstream_requests", "Calls to the device API.", ("endpoint", "outcome")
        )
        self.upstream_duration = histogram(
            "iotedge_upstream_request_duration_seconds",
            "Time a device API call took, whatever its outcome.",
            UPSTREAM_BUCKETS,
            ("endpoint",),
        )
        for endpoint in upstream_endpoints:
            self.upstream_duration.labels(endpoint=endpoint)
            for outcome in UPSTREAM_OUTCOMES:
                self.upstream_requests.labels(endpoint=endpoint, outcome=outcome)

        self.collector_cycle_duration = histogram(
            "iotedge_collector_cycle_duration_seconds",
            "Time one polling cycle took (catalogue, readings, store, rules).",
            CYCLE_BUCKETS,
        )
        self.collector_cycles = counter(
            "iotedge_collector_cycles", "Polling cycles run, by outcome.", ("outcome",)
        )
        for outcome in ("ok", "error"):
            self.collector_cycles.labels(outcome=outcome)
        self.collector_last_success = gauge(
            "iotedge_collector_last_success_timestamp_seconds",
            "Unix time at which the last successful polling cycle ended (0: none yet).",
        )
        self.collector_lag = gauge(
            "iotedge_collector_lag_seconds",
            "Age of the newest stored reading when the last cycle ended.",
        )
        self.collector_failures = gauge(
            "iotedge_collector_consecutive_failures", "Polling cycles failed in a row."
        )

        self.readings_ingested = counter("iotedge_readings_ingested", "Readings accepted and stored.")
        self.readings_rejected = counter(
            "iotedge_readings_rejected", "Readings refused by the normaliser.", ("reason",)
        )
        for reason in (*reject_reasons, OTHER):
            self.readings_rejected.labels(reason=reason)

        registry.register(_AnomaliesOpenedCollector(self._anomaly_counts))
        self.notifications = counter(
            "iotedge_notifications", "Notification deliveries.", ("channel", "outcome")
        )
        for channel in channels:
            for outcome in NOTIFICATION_OUTCOMES:
                self.notifications.labels(channel=channel, outcome=outcome)
        self.notifications_pending = gauge(
            "iotedge_notifications_pending", "Notifications in the outbox not yet delivered."
        )
        self.store_size = gauge("iotedge_store_size_bytes", "Size of the store on disk, journal included.")
        self.store_buffer_readings = gauge(
            "iotedge_store_buffer_readings",
            "Polled readings held in memory while the store does not answer, waiting to be written.",
        )
        self.store_buffer_dropped = counter(
            "iotedge_store_buffer_dropped",
            "Polled readings dropped (oldest first) because the store buffer was full.",
        )
        self.objects = gauge("iotedge_objects", "Objects in the device catalogue.")
        self.tls_handshake_errors = counter(
            "iotedge_tls_handshake_errors",
            "TLS handshakes refused, by reason (plain_http: HTTP sent to HTTPS).",
            ("reason",),
        )
        for reason in TLS_REASONS:
            self.tls_handshake_errors.labels(reason=reason)
        self.connections_closed = counter(
            "iotedge_connections_closed",
            "Connections the server closed to protect itself, by reason.",
            ("reason",),
        )
        for reason in CONNECTION_EVENTS:
            self.connections_closed.labels(reason=reason)
        # process_* (CPU seconds, resident memory, start time, open files) of this process.
        ProcessCollector(registry=registry)

        registry.register(_ContainerCollector(lambda: self._container))
        if per_object:
            registry.register(_ObjectValuesCollector(lambda: self._latest_values))
        registry.register(_OpenAnomaliesCollector(lambda: self._open_anomalies, lambda: self._anomaly_counts))

    def bind(
        self,
        *,
        container: ContainerSource | None = None,
        latest_values: LatestValues | None = None,
        open_anomalies: OpenAnomalies | None = None,
    ) -> None:
        """Attach scrape-time sources once they exist (e.g. in the lifespan); None keeps one."""
        self._container = container or self._container
        self._latest_values = latest_values or self._latest_values
        self._open_anomalies = open_anomalies or self._open_anomalies

    def init_anomaly_labels(self, label_sets: Iterable[tuple[str, str, str]]) -> None:
        """Pre-set (client, metric, rule) series at zero, so rates and 'open' start at 0.

        Pass the combinations that can occur (a client's metrics times the rules that
        apply to each), e.g. from the catalogue once it is known; calling again adds more.
        """
        counts = self._anomaly_counts
        for labels in label_sets:
            counts.setdefault(labels, 0)

    def record_connection_event(self, event: str) -> None:
        """Count a connection the guard closed, or a refused TLS handshake (``tls_<reason>``)."""
        if event.startswith("tls_"):
            reason = self._bounded("reason", event.removeprefix("tls_"), TLS_REASONS)
            self.tls_handshake_errors.labels(reason=reason).inc()
            return
        self.connections_closed.labels(reason=self._bounded("reason", event, CONNECTION_EVENTS)).inc()

    def observe_http(self, route: str, method: str, status: int, duration_s: float) -> None:
        """Count one answered request by route *template* (never the raw path)."""
        method = method if method in HTTP_METHODS else OTHER
        key = (route, method, status)
        children = self._http_children.get(key)
        if children is None:
            # Routes are templates, methods and statuses bounded sets: the cache stays small.
            children = (
                self.http_requests.labels(route=route, method=method, status=str(status)),
                self.http_duration.labels(route=route, method=method),
            )
            self._http_children[key] = children
        children[0].inc()
        children[1].observe(duration_s)

    def observe_upstream(self, endpoint: str, outcome: str, duration_s: float) -> None:
        """Count one device API call; ``outcome`` is ``ok`` or an UpstreamError reason."""
        children = self._upstream_children.get((endpoint, outcome))
        if children is None:
            bounded = self._bounded("endpoint", endpoint, self._endpoints)
            label = self._bounded("outcome", outcome, UPSTREAM_OUTCOMES)
            children = (
                self.upstream_requests.labels(endpoint=bounded, outcome=label),
                self.upstream_duration.labels(endpoint=bounded),
            )
            # Only known pairs are kept: unknown values must not grow the cache.
            if (bounded, label) == (endpoint, outcome):
                self._upstream_children[(endpoint, outcome)] = children
        children[0].inc()
        children[1].observe(duration_s)

    def observe_cycle(
        self,
        *,
        ok: bool,
        duration_s: float,
        consecutive_failures: int = 0,
        lag_s: float | None = None,
    ) -> None:
        """Record one polling cycle; a success also stamps the last-success time."""
        self.collector_cycle_duration.observe(duration_s)
        self.collector_cycles.labels(outcome="ok" if ok else "error").inc()
        self.collector_failures.set(consecutive_failures)
        if ok:
            self.collector_last_success.set(self._clock())
        if lag_s is not None:
            self.collector_lag.set(lag_s)

    def record_ingested(self, count: int) -> None:
        """Count readings stored."""
        self.readings_ingested.inc(count)

    def record_rejected(self, reason: str, count: int = 1) -> None:
        """Count readings refused, by one of :data:`REJECT_REASONS`."""
        reason = self._bounded("reason", reason, self._reasons)
        self.readings_rejected.labels(reason=reason).inc(count)

    def record_anomaly(self, client: str, metric: str, rule: str) -> None:
        """Count one anomaly event opened."""
        key = (client, metric, rule)
        self._anomaly_counts[key] = self._anomaly_counts.get(key, 0) + 1

    def record_notification(self, channel: str, outcome: str, count: int = 1) -> None:
        """Count notification deliveries by channel and :data:`NOTIFICATION_OUTCOMES`."""
        channel = self._bounded("channel", channel, self._channels)
        outcome = self._bounded("outcome", outcome, NOTIFICATION_OUTCOMES)
        self.notifications.labels(channel=channel, outcome=outcome).inc(count)

    def _bounded(self, label: str, value: str, allowed: Iterable[str]) -> str:
        """``value`` if it is in the bounded set, else ``other`` (warned about once)."""
        if value in allowed:
            return value
        if (label, value) not in self._warned and len(self._warned) < _MAX_WARNINGS:
            self._warned.add((label, value))
            _log.warning("metric label %s=%r is not a known value; counted as %r", label, value, OTHER)
        return OTHER
