"""Measuring one URL: wrk for throughput, a sequential probe for latency percentiles."""

import math
import re
import statistics
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import httpx

from processes import Server, settle

__all__ = [
    "FULL",
    "QUICK",
    "Measure",
    "Profile",
    "WrkResult",
    "measure_once",
    "percentile",
    "probe",
    "run_wrk",
]

_MIN_SAMPLES = 3  # a probe goes past its time budget to get at least this many


@dataclass(frozen=True, kw_only=True)
class Profile:
    """How long and how often to measure."""

    rounds: int
    wrk_seconds: float  # shortest wrk run
    wrk_max_seconds: float  # longest wrk run (slow endpoints get up to this)
    connections: int
    probe_requests: int  # latency probe: at most this many requests ...
    probe_seconds: float  # ... and no new request after this long
    settle_seconds: float  # longest wait for the servers to go idle between runs
    latencies_ms: tuple[int, ...]
    sizes: tuple[int, ...]
    startup_runs: int
    ingest_rounds: int  # fresh stores per batch size
    ingest_batches: tuple[int, ...]  # readings per insert_readings call
    ingest_readings: int  # readings inserted per round
    history_days: tuple[float, ...]  # stored history sizes
    history_queries: int  # in-process Store.summary calls per size
    fleets: tuple[int, ...]  # objects polled, rss scenario
    rss_polls: int  # poll cycles after the first (backfill) one
    rss_max_seconds: float  # per fleet
    load_seconds: float
    load_connections: int


# The profile of `make bench`, and of its smoke version (--quick).
FULL = Profile(
    rounds=3,
    wrk_seconds=3,
    wrk_max_seconds=10,
    connections=16,
    probe_requests=200,
    probe_seconds=3,
    settle_seconds=20,
    latencies_ms=(0, 20, 50),
    sizes=(2, 10, 100),
    startup_runs=5,
    ingest_rounds=7,
    ingest_batches=(1_000, 10_000),
    ingest_readings=200_000,
    history_days=(1 / 24, 1, 7, 30),
    history_queries=50,
    fleets=(100, 1_000, 10_000),
    rss_polls=5,
    rss_max_seconds=240,
    load_seconds=180,
    load_connections=16,
)
QUICK = Profile(
    rounds=1,
    wrk_seconds=1,
    wrk_max_seconds=2,
    connections=8,
    probe_requests=20,
    probe_seconds=1,
    settle_seconds=3,
    latencies_ms=(0,),
    sizes=(2,),
    startup_runs=1,
    ingest_rounds=2,
    ingest_batches=(1_000, 10_000),
    ingest_readings=20_000,
    history_days=(1 / 24, 1),
    history_queries=10,
    fleets=(100,),
    rss_polls=1,
    rss_max_seconds=60,
    load_seconds=8,
    load_connections=8,
)


@dataclass(frozen=True, kw_only=True)
class WrkResult:
    """One wrk run."""

    rps: float
    requests: int
    errors: int  # socket errors plus non-2xx/3xx answers
    seconds: float


_WRK_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_WRK_TOTAL = re.compile(r"(\d+) requests in")
_WRK_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_WRK_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


def run_wrk(url: str, *, seconds: float, connections: int, headers: Mapping[str, str]) -> WrkResult:
    """Load ``url`` with wrk (one thread, keep-alive) for ``seconds``."""
    whole = max(1, round(seconds))
    argv = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{whole}s",
        "--timeout",
        "60s",
    ]
    for key, value in headers.items():
        argv += ["-H", f"{key}: {value}"]
    out = subprocess.run([*argv, url], capture_output=True, text=True, timeout=whole + 90, check=True).stdout
    rps = _WRK_RPS.search(out)
    total = _WRK_TOTAL.search(out)
    if rps is None or total is None:
        raise RuntimeError(f"cannot read wrk output:\n{out}")
    socket_errors = _WRK_SOCKET.search(out)
    non2xx = _WRK_NON2XX.search(out)
    errors = sum(int(n) for n in socket_errors.groups()) if socket_errors else 0
    errors += int(non2xx.group(1)) if non2xx else 0
    return WrkResult(rps=float(rps.group(1)), requests=int(total.group(1)), errors=errors, seconds=whole)


def probe(url: str, *, requests: int, seconds: float, headers: Mapping[str, str]) -> tuple[list[float], int]:
    """Sequential requests to ``url``: latencies in ms and the count of non-200 answers."""
    samples: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds
    with httpx.Client(timeout=60.0, headers=dict(headers)) as client:
        client.get(url)  # open the connection outside the sample
        for _ in range(requests):
            if len(samples) >= _MIN_SAMPLES and time.monotonic() >= deadline:
                break
            start = time.perf_counter()
            response = client.get(url)
            samples.append((time.perf_counter() - start) * 1000)
            errors += response.status_code != 200
    return samples, errors


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``samples``, nearest rank."""
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))
    return ordered[rank]


@dataclass
class Measure:
    """Every round of one (server, path) pair."""

    rps: list[float] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    requests: int = 0

    def add(self, wrk: WrkResult, samples: list[float], probe_errors: int) -> None:
        """Record one round."""
        self.rps.append(wrk.rps)
        self.latencies_ms += samples
        self.errors += wrk.errors + probe_errors
        self.requests += wrk.requests + len(samples)

    def summary(self) -> dict[str, float]:
        """Median req/s over rounds, latency percentiles over all samples."""
        lat = self.latencies_ms
        return {
            "rps": statistics.median(self.rps),
            "p50_ms": percentile(lat, 0.50),
            "p95_ms": percentile(lat, 0.95),
            "p99_ms": percentile(lat, 0.99),
            "samples": len(lat),
            "rounds": len(self.rps),
            "errors": self.errors,
            "requests": self.requests,
        }


def measure_once(
    measure: Measure,
    url: str,
    *,
    profile: Profile,
    headers: Mapping[str, str],
    servers: Sequence[Server],
) -> None:
    """One round on ``url``: latency probe, then wrk long enough for a few requests."""
    settle(servers, profile.settle_seconds)
    samples, probe_errors = probe(
        url, requests=profile.probe_requests, seconds=profile.probe_seconds, headers=headers
    )
    seconds = min(profile.wrk_max_seconds, max(profile.wrk_seconds, 4 * max(samples) / 1000))
    settle(servers, profile.settle_seconds)
    wrk = run_wrk(url, seconds=seconds, connections=profile.connections, headers=headers)
    measure.add(wrk, samples, probe_errors)
