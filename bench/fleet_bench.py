"""Edge memory and poll-cycle time against fleet size (the ``rss`` scenario)."""

import os
import statistics
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from edgeproc import cycle_stats, edge_command, edge_env, key_of, sim_command
from measure import Profile
from processes import free_port, say, serve

__all__ = ["scenario_rss"]

_INTERVAL_S = 5.0  # what edge_command polls at
_SCRAPE_EVERY_S = 5.0  # a metrics scrape to count cycles, as often as a fast Prometheus would
_TICK = os.sysconf("SC_CLK_TCK")


def _fleet_args(objects: int) -> list[str]:
    per_client = 10 if objects >= 10 else objects
    return ["--clients", str(max(1, objects // per_client)), "--objects-per-client", str(per_client)]


def scenario_rss(profile: Profile, log_dir: Path) -> list[dict[str, Any]]:
    """For each fleet size, an edge polls a simulator every 5 s; RSS and cycle times after N polls."""
    rows = []
    for objects in profile.fleets:
        say(f"rss: {objects:,} objects, {profile.rss_polls} polls after the first")
        rows.append(run_fleet(profile, log_dir, objects))
    return rows


def _ingested(metrics_url: str) -> float:
    for line in httpx.get(metrics_url, timeout=30.0).text.splitlines():
        if line.startswith("iotedge_readings_ingested_total "):
            return float(line.split()[1])
    return 0.0


def _first_cycle_seconds(edge_url: str) -> float | None:
    """The first cycle's duration while it is the only one (``/status``), else None."""
    try:
        answer = httpx.get(edge_url + "/status", headers={"x-api-key": key_of("*")}, timeout=10.0)
        collector = answer.json()["collector"]
    except (httpx.HTTPError, ValueError, KeyError):
        return None
    return float(collector["last_cycle_seconds"]) if collector["cycles"] == 1 else None


def run_fleet(
    profile: Profile, log_dir: Path, objects: int, *, extra_env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """One fleet: cycles, RSS over time, CPU shares of the edge and the simulator.

    ``extra_env`` goes to the edge only (the ``versus`` scenario points PYTHONPATH at older code).
    """
    sim_port, port, metrics_port = free_port(), free_port(), free_port()
    with (
        serve(
            f"sim-{objects}", sim_command(sim_port, *_fleet_args(objects)), port=sim_port, log_dir=log_dir
        ) as sim,
        tempfile.TemporaryDirectory(prefix="iotedge-fleet-") as tmp,
    ):
        argv = edge_command(port, sim.url, Path(tmp), metrics_port=metrics_port)
        with serve(
            f"edge-{objects}",
            argv,
            port=port,
            log_dir=log_dir,
            env={**edge_env(), **(extra_env or {})},
            timeout=60,
        ) as edge:
            metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
            started = time.monotonic()
            deadline = started + profile.rss_max_seconds
            rss: list[tuple[float, float]] = []
            scrapes: list[float] = []
            first: tuple[int, float, float, int, int] | None = None  # count, sum, t, edge/sim ticks
            # Read from /status every second until the first cycle is over: the metrics scrape
            # comes every 5 s, by when a short second cycle may have ended too.
            first_seconds: float | None = None
            count, total = 0, 0.0
            next_scrape = started
            while time.monotonic() < deadline:
                now = time.monotonic()
                rss.append((now - started, edge.status_kib("VmRSS") / 1024))
                if first is None:
                    first_seconds = _first_cycle_seconds(edge.url) or first_seconds
                if now >= next_scrape:
                    t0 = time.perf_counter()
                    count, total = cycle_stats(metrics_url)
                    scrapes.append(time.perf_counter() - t0)
                    next_scrape = now + _SCRAPE_EVERY_S
                    if first is None and count >= 1:
                        first = (count, total, now, edge.cpu_ticks(), sim.cpu_ticks())
                        say(f"rss: {objects:,} objects, first cycle (with backfill) {total:.1f} s")
                    if first is not None and count >= first[0] + profile.rss_polls:
                        break
                time.sleep(1.0)
            end = time.monotonic()
            edge_ticks, sim_ticks = edge.cpu_ticks(), sim.cpu_ticks()
            ingested = _ingested(metrics_url)
            peak = edge.status_kib("VmHWM") / 1024
            final = edge.status_kib("VmRSS") / 1024
    if first is None:
        raise RuntimeError(f"{objects} objects: no poll cycle finished in {profile.rss_max_seconds} s")
    steady = count - first[0]
    wall = end - first[2]
    steady_rss = [mib for t, mib in rss if t >= first[2] - started]
    mean_cycle = (total - first[1]) / steady if steady else float("nan")
    return {
        "objects": objects,
        "first_cycle_s": first_seconds if first_seconds is not None else first[1] / first[0],
        # The edge's CPU from its start until the first cycle was seen over (start-up included).
        "first_cycle_cpu_s": first[3] / _TICK,
        "cycles": steady,
        "mean_cycle_s": mean_cycle,
        "keeps_up": bool(steady) and mean_cycle <= _INTERVAL_S,
        "polls_per_s": steady * objects / wall if wall > 0 else 0.0,
        "rss_after_first_mib": steady_rss[0] if steady_rss else final,
        "rss_end_mib": final,
        "rss_median_mib": statistics.median(steady_rss) if steady_rss else final,
        "peak_rss_mib": peak,
        "edge_cpu_pct": 100 * (edge_ticks - first[3]) / _TICK / wall if wall > 0 else 0.0,
        "sim_cpu_pct": 100 * (sim_ticks - first[4]) / _TICK / wall if wall > 0 else 0.0,
        "readings_ingested": ingested,
        "scrape_p50_ms": 1000 * statistics.median(scrapes),
        "rss_series": [(round(t, 1), round(mib, 1)) for t, mib in rss],
    }
