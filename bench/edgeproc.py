"""How the benchmarks start ``iotedge sim`` and ``iotedge edge``, and read their metrics."""

import re
import sys
from pathlib import Path

import httpx

__all__ = [
    "CLIENT_KEYS",
    "CLOUD_KEY",
    "cycle_stats",
    "edge_command",
    "edge_env",
    "key_of",
    "sim_command",
]

CLIENT_KEYS = {f"client_{n}": f"bench-key-client-{n}-0123456789" for n in range(1, 11)}
"""API keys of the benchmark edges, one per client (16+ characters, as the edge requires)."""

CLOUD_KEY = "bench-key-cloud-all-0123456789"
"""The read-everything ('*') key of the benchmark edges."""


def key_of(client: str) -> str:
    """The key of ``client`` (``*`` for the cloud key)."""
    return CLOUD_KEY if client == "*" else CLIENT_KEYS[client]


def edge_env() -> dict[str, str]:
    """Environment giving a benchmark edge its keys, with per-key rate limits off.

    The rate limits are a policy (50 req/s per key by default) that would cap every
    throughput figure at the policy's value; the benchmarks measure the machinery.
    """
    pairs = [f"{client}={key}" for client, key in CLIENT_KEYS.items()] + [f"*={CLOUD_KEY}"]
    return {"IOTEDGE_API_KEYS": ",".join(pairs), "IOTEDGE_RATE_LIMIT": "0", "IOTEDGE_AUTH_FAILURES": "0"}


def sim_command(port: int, *extra: str) -> list[str]:
    """The command line of a quiet ``iotedge sim`` on ``port``."""
    return [sys.executable, "-m", "iotedge", "--log-level", "warning", "sim", "--port", str(port), *extra]


def edge_command(
    port: int, upstream: str, data_dir: Path, *extra: str, metrics_port: int = 0, log_level: str = "warning"
) -> list[str]:
    """The command line of an ``iotedge edge`` polling ``upstream`` every 5 s (as in production)."""
    return [
        sys.executable,
        "-m",
        "iotedge",
        "--log-level",
        log_level,
        "edge",
        "--port",
        str(port),
        "--upstream",
        upstream,
        "--data-dir",
        str(data_dir),
        "--metrics-port",
        str(metrics_port),
        "--poll-interval",
        "5s",
        "--edge-id",
        "bench-edge",
        *extra,
    ]


_CYCLES = re.compile(r"^iotedge_collector_cycle_duration_seconds_(count|sum) ([0-9.e+-]+)$", re.MULTILINE)


def cycle_stats(metrics_url: str) -> tuple[int, float]:
    """(cycles so far, their total seconds) from an edge's metrics endpoint."""
    text = httpx.get(metrics_url, timeout=30.0).text
    found = dict(_CYCLES.findall(text))
    return int(float(found.get("count", 0))), float(found.get("sum", 0.0))
