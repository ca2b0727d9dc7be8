"""The store's own costs: batch ingest rate, and statistics time against stored history."""

import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from edgeproc import edge_command, edge_env, key_of, sim_command
from iotedge.edge.app import STORE_FILENAME
from iotedge.edge.normalise import CatalogueEntry, Reading
from iotedge.edge.store import Store
from iotedge.specs import DEVICE_TYPES
from measure import Profile, percentile, probe, run_wrk
from processes import free_port, say, serve
from versus import BENCH, export_src, short_commit

__all__ = ["scenario_history", "scenario_ingest"]

_STEP_S = 5.0  # the production poll interval: one reading per metric every 5 s
_DAY_S = 86400.0


# -- ingest ----------------------------------------------------------------------------


def _round(batch: int, total: int, seed: int, env: dict[str, str]) -> dict[str, Any]:
    """One ``ingest_round.py`` process (``env`` may point PYTHONPATH at another commit's src)."""
    out = subprocess.run(
        [sys.executable, str(BENCH / "ingest_round.py"), str(batch), str(total), str(seed)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
        env={**os.environ, **env},
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def scenario_ingest(profile: Profile, before: str | None = None) -> list[dict[str, Any]]:
    """Readings/s of ``Store.insert_readings`` into a fresh store, per batch size.

    Each round runs in a process of its own. With ``before`` (a git ref), that commit's store
    runs beside this tree's in the same rounds, in alternating order, and each row of this
    tree carries its ratio to the baseline's median.
    """
    with tempfile.TemporaryDirectory(prefix="iotedge-ingest-before-") as tmp:
        trees: dict[str, dict[str, str]] = {"this tree": {}}
        if before is not None:
            trees[f"{before} ({short_commit(before)})"] = {"PYTHONPATH": str(export_src(before, Path(tmp)))}
        rows: list[dict[str, Any]] = []
        for batch in profile.ingest_batches:
            rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
            for rnd in range(profile.ingest_rounds):
                order = list(trees) if rnd % 2 == 0 else list(trees)[::-1]
                for name in order:
                    say(f"ingest: batches of {batch:,}, round {rnd + 1}/{profile.ingest_rounds}, {name}")
                    rounds[name].append(_round(batch, profile.ingest_readings, rnd, trees[name]))
            rows += [_ingest_row(name, batch, results) for name, results in rounds.items()]
    if before is not None:
        for row in rows:
            base = next(r for r in rows if r["batch"] == row["batch"] and r["store"] != "this tree")
            row["x_baseline"] = row["readings_per_s"] / base["readings_per_s"]
    return rows


def _ingest_row(name: str, batch: int, results: list[dict[str, Any]]) -> dict[str, Any]:
    rates = [r["inserted"] / r["elapsed_s"] for r in results]
    batch_ms = [ms for r in results for ms in r["batch_ms"]]
    return {
        "store": name,
        "batch": batch,
        "readings_per_round": results[-1]["inserted"],
        "rounds": len(rates),
        "readings_per_s": statistics.median(rates),
        "min_readings_per_s": min(rates),
        "max_readings_per_s": max(rates),
        "batch_p50_ms": percentile(batch_ms, 0.50),
        "batch_p99_ms": percentile(batch_ms, 0.99),
        # What a reading costs this process (user + system): other work on the machine moves
        # it far less than the wall-clock rate.
        "cpu_us_per_reading": statistics.median(1e6 * r["cpu_s"] / r["inserted"] for r in results),
    }


# -- history ---------------------------------------------------------------------------


def _extend_history(store: Store, entry: CatalogueEntry, since: float, until: float) -> int:
    """Write one reading per metric every 5 s in [since, until) for ``entry``; returns rows."""
    rng = random.Random(int(since))
    metrics = DEVICE_TYPES[entry.type].metrics
    written = 0
    chunk: list[Reading] = []
    steps = int((until - since) / _STEP_S)
    for step in range(steps):
        ts = since + step * _STEP_S
        level = 50.0 + 10.0 * math.sin(ts / 3600.0)
        for metric in metrics:
            chunk.append(Reading(entry.id, entry.client, metric, ts, round(level + rng.uniform(-1, 1), 2)))
        if len(chunk) >= 20_000:
            written += store.insert_readings(chunk)
            chunk = []
    written += store.insert_readings(chunk)
    return written


def _summary_ms(store: Store, entry: CatalogueEntry, since: float, until: float, repeats: int) -> list[float]:
    """Times of ``Store.summary`` of the entry's primary metric over [since, until), in ms."""
    metric = DEVICE_TYPES[entry.type].primary
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        store.summary(entry.id, metric, since, until)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def scenario_history(profile: Profile, log_dir: Path) -> list[dict[str, Any]]:
    """Statistics of one object over a day, against 1 hour to 30 days of stored history.

    The rows are written straight into a store (one reading per metric every 5 s, ending
    now); then ``Store.summary`` is timed in-process, and ``/processed_data?window=1d`` on
    an edge process opened on that store while it polls a simulator, over the history's
    last day.
    """
    rows: list[dict[str, Any]] = []
    sim_port = free_port()
    with (
        serve("sim-history", sim_command(sim_port), port=sim_port, log_dir=log_dir) as sim,
        tempfile.TemporaryDirectory(prefix="iotedge-history-") as tmp,
    ):
        catalogue = httpx.get(sim.url + "/iot_objects", timeout=10).json()
        entries = [CatalogueEntry(o["id"], o["client"], o["type"]) for o in catalogue]
        target = next(e for e in entries if e.id == "device_1")
        data_dir = Path(tmp)
        end = math.floor(time.time() / _STEP_S) * _STEP_S
        covered = 0.0
        for days in sorted(profile.history_days):
            span = days * _DAY_S
            label = f"{days * 24:g} h" if days < 1 else f"{days:g} d"
            say(f"history: {label} of 5-second readings")
            store = Store(data_dir / STORE_FILENAME)
            try:
                store.upsert_objects(entries, end)
                _extend_history(store, target, end - span, end - covered)
                covered = span
                stored = store.count_readings()
                now = time.time()
                day = _summary_ms(store, target, now - _DAY_S, now, profile.history_queries)
                whole = _summary_ms(store, target, now - span - 60, now, profile.history_queries)
                size_mib = store.size_bytes() / 2**20
            finally:
                store.close()
            endpoint = _endpoint(profile, log_dir, sim.url, data_dir, end)
            rows.append(
                {
                    "history": label,
                    "history_days": days,
                    "rows": stored,
                    "store_mib": size_mib,
                    "summary_day_p50_ms": percentile(day, 0.50),
                    "summary_day_p99_ms": percentile(day, 0.99),
                    "summary_all_p50_ms": percentile(whole, 0.50),
                    **endpoint,
                }
            )
    return rows


def _endpoint(profile: Profile, log_dir: Path, upstream: str, data_dir: Path, end: float) -> dict[str, Any]:
    """``/processed_data`` over the written history's last day, on an edge serving ``data_dir``.

    The window ends where the written history ends, not at "now": on a slow machine a
    window ending now would lose readings at its start while the edge has not yet polled
    the time since ``end``.
    """
    port = free_port()
    path = f"/processed_data?object_id=device_1&from={end - _DAY_S:.0f}&to={end:.0f}"
    headers = {"x-api-key": key_of("client_1")}
    argv = edge_command(port, upstream, data_dir, "--retention", "40d")
    with serve(
        "edge-history", argv, port=port, log_dir=log_dir, ready_path=path, headers=headers, env=edge_env()
    ) as edge:
        body = httpx.get(edge.url + path, headers=headers, timeout=30).json()
        samples, errors = probe(
            edge.url + path,
            requests=profile.probe_requests,
            seconds=max(profile.probe_seconds, 2.0),
            headers=headers,
        )
        wrk = run_wrk(
            edge.url + path, seconds=profile.wrk_seconds, connections=profile.connections, headers=headers
        )
    return {
        "window_count": int(body["statistics"]["count"]),
        "endpoint_p50_ms": percentile(samples, 0.50),
        "endpoint_p99_ms": percentile(samples, 0.99),
        "endpoint_rps": wrk.rps,
        "samples": len(samples),
        "errors": errors + wrk.errors,
    }
