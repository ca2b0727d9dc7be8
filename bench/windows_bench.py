"""Window statistics from rollups against raw rows (issue 16), and what the rollups cost at ingest.

One store holds 30 days of 5-second readings of device_1 (both metrics) and a day of nine
more objects of the same client. Each window ending now (1 h, 1 d, 7 d, 30 d) is asked in
interleaved rounds of the raw computation (the SQL of earlier releases, still in
``iotedge.edge.store.windows``) and of the rollups, on the same store in the same run.
"""

import math
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from iotedge.edge.normalise import CatalogueEntry, Reading
from iotedge.edge.store import Store, windows
from iotedge.specs import DEVICE_TYPES
from measure import Profile
from processes import say

__all__ = ["scenario_windows", "windows_md"]

_STEP_S = 5.0
_DAY_S = 86_400.0
_WINDOWS = (("1 h", 3_600.0), ("1 d", _DAY_S), ("7 d", 7 * _DAY_S), ("30 d", 30 * _DAY_S))
_MAX_REPEATS = 9  # a raw 30-day client query takes about a second; keep the run within ~3 min
_CHUNK = 50_000
_INGEST_BATCH = 1_000
_INGEST_MAX_BATCHES = 100
_INGEST_MAX_ROUNDS = 3
# Earlier releases' insert: the raw rows and the latest values, nothing else.
_RAW_INSERT = "INSERT OR IGNORE INTO readings (object_id, metric, ts, value, client) VALUES (?,?,?,?,?)"
_RAW_LATEST = (
    "INSERT INTO latest (object_id, metric, ts, value, client) VALUES (?,?,?,?,?) "
    "ON CONFLICT (object_id, metric) DO UPDATE SET ts=excluded.ts, value=excluded.value, "
    "client=excluded.client WHERE excluded.ts >= latest.ts"
)


def _series(entry: CatalogueEntry, since: float, until: float) -> Iterator[list[Reading]]:
    """One reading per metric every 5 s in [since, until), in chunks."""
    rng = random.Random(entry.id)
    chunk: list[Reading] = []
    for step in range(int((until - since) / _STEP_S)):
        ts = since + step * _STEP_S
        level = 50.0 + 10.0 * math.sin(ts / 3600.0)
        for metric in DEVICE_TYPES[entry.type].metrics:
            chunk.append(Reading(entry.id, entry.client, metric, ts, round(level + rng.uniform(-1, 1), 2)))
        if len(chunk) >= _CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _ms(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def _windows(profile: Profile) -> list[tuple[str, float]]:
    longest = max(profile.history_days) * _DAY_S
    return [(label, span) for label, span in _WINDOWS if span <= max(longest, _DAY_S)]


def _queries(store: Store, profile: Profile, end: float) -> list[dict[str, Any]]:
    query = store.database.query
    metric = DEVICE_TYPES["temperature_sensor"].primary
    repeats = min(profile.history_queries, _MAX_REPEATS)
    rows = []
    for label, span in _windows(profile):
        since = end - span
        # A Grafana panel's grid: about 720 points, on whole minutes, anchored on the step.
        step = float(max(60, math.ceil(span / 720 / 60) * 60))
        origin = math.floor(since / step) * step
        raw = windows.summary_raw(query, "device_1", metric, since, end)
        rolled = windows.summary(query, "device_1", metric, since, end)
        if (raw.count, raw.min, raw.max, raw.last) != (rolled.count, rolled.min, rolled.max, rolled.last):
            raise RuntimeError(f"rollups disagree with the raw rows over {label}: {rolled} != {raw}")
        calls: dict[str, Callable[[], object]] = {
            "raw": partial(windows.summary_raw, query, "device_1", metric, since, end),
            "rollup": partial(windows.summary, query, "device_1", metric, since, end),
            "client_raw": partial(windows.client_moments_raw, query, "client_1", since, end),
            "client_rollup": partial(windows.client_moments, query, "client_1", since, end),
            "series_raw": partial(
                windows.bucket_rows_raw, query, ["device_1"], metric, since, end, step, origin
            ),
            "series_rollup": partial(
                windows.bucket_rows, query, ["device_1"], metric, since, end, step, origin
            ),
        }
        times: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(repeats):  # interleaved, so machine noise falls on both alike
            for name, call in calls.items():
                times[name].append(_ms(call))
        medians = {name: statistics.median(samples) for name, samples in times.items()}
        rows.append(
            {
                "window": label,
                "readings": raw.count,
                "summary_raw_p50_ms": medians["raw"],
                "summary_rollup_p50_ms": medians["rollup"],
                "summary_speedup": medians["raw"] / medians["rollup"],
                "client_raw_p50_ms": medians["client_raw"],
                "client_rollup_p50_ms": medians["client_rollup"],
                "client_speedup": medians["client_raw"] / medians["client_rollup"],
                "series_step_s": step,
                "series_raw_p50_ms": medians["series_raw"],
                "series_rollup_p50_ms": medians["series_rollup"],
                "repeats": repeats,
            }
        )
    return rows


def _ingest_rates(profile: Profile, tmp: Path) -> dict[str, float]:
    """Readings/s of 1,000-reading batches (500 objects x 2 metrics), without and with rollups."""
    count = max(1, min(profile.ingest_readings // _INGEST_BATCH, _INGEST_MAX_BATCHES))
    rng = random.Random(7)
    batches = [
        [
            Reading(
                f"device_{i}", f"client_{i // 10}", metric, 1.8e9 + n * _STEP_S, round(rng.uniform(10, 90), 2)
            )
            for i in range(_INGEST_BATCH // 2)
            for metric in ("temperature", "battery_level")
        ]
        for n in range(count)
    ]
    rates: dict[str, list[float]] = {"raw": [], "rollup": []}
    for number in range(min(profile.ingest_rounds, _INGEST_MAX_ROUNDS)):
        for kind in ("raw", "rollup"):
            store = Store(tmp / f"ingest-{kind}-{number}.sqlite3", check=False)
            started = time.perf_counter()
            for readings in batches:
                if kind == "rollup":
                    store.insert_readings(readings)
                    continue
                rows = [(r.object_id, r.metric, r.ts, r.value, r.client) for r in readings]
                with store.database.write() as db:
                    db.executemany(_RAW_INSERT, rows)
                    db.executemany(_RAW_LATEST, rows)
            rates[kind].append(_INGEST_BATCH * count / (time.perf_counter() - started))
            store.close()
    return {kind: statistics.median(samples) for kind, samples in rates.items()}


def scenario_windows(profile: Profile) -> dict[str, Any]:
    """Window statistics raw against rollups over 1 h to 30 d of history, and the ingest cost."""
    with tempfile.TemporaryDirectory(prefix="iotedge-windows-") as tmp:
        store = Store(Path(tmp) / "edge.sqlite3", check=False)
        try:
            types = tuple(DEVICE_TYPES)
            entries = [
                CatalogueEntry(f"device_{i}", "client_1", types[(i - 1) % len(types)]) for i in range(1, 11)
            ]
            end = math.floor(time.time() / _STEP_S) * _STEP_S
            store.upsert_objects(entries, end)
            longest = max(span for _, span in _windows(profile))
            started = time.perf_counter()
            written = 0
            for entry in entries:
                span = longest if entry.id == "device_1" else min(longest, _DAY_S)
                say(f"windows: writing {span / _DAY_S:g} d of 5-second readings of {entry.id}")
                for chunk in _series(entry, end - span, end):
                    written += store.insert_readings(chunk)
            write_s = time.perf_counter() - started
            rows = _queries(store, profile, end + 2.5)  # "now" falls inside a minute, as it does live
        finally:
            store.close()
        say("windows: ingest with and without rollups")
        ingest = _ingest_rates(profile, Path(tmp))
    return {"rows": rows, "history_rows": written, "history_write_s": write_s, "ingest": ingest}


def windows_md(data: dict[str, Any]) -> list[str]:
    """The markdown section of ``scenario_windows``."""
    lines = [
        "## Window statistics: rollups against raw rows",
        "",
        f"device_1 holds up to 30 d of 5-second readings; {data['history_rows']:,} rows written "
        f"in {data['history_write_s']:.1f} s. `summary` is one object's primary metric; "
        "*client* is the per-object moments of client_1's 10 objects (the SQL part of "
        "`client_summaries`); *series* is device_1's down-sampled series on a grid of about 720 "
        "whole-minute steps (Grafana). Medians of interleaved rounds.",
        "",
        "| window | readings | summary raw ms | summary rollups ms | x | client raw ms "
        "| client rollups ms | x | series step s | series raw ms | series rollups ms |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in data["rows"]:
        lines.append(
            f"| {r['window']} | {r['readings']:,} | {r['summary_raw_p50_ms']:.2f} | "
            f"{r['summary_rollup_p50_ms']:.2f} | {r['summary_speedup']:.0f} | {r['client_raw_p50_ms']:.2f} | "
            f"{r['client_rollup_p50_ms']:.2f} | {r['client_speedup']:.0f} | {r['series_step_s']:.0f} | "
            f"{r['series_raw_p50_ms']:.2f} | {r['series_rollup_p50_ms']:.2f} |"
        )
    ingest = data["ingest"]
    lines += [
        "",
        f"Ingest, batches of {_INGEST_BATCH:,} new readings: {ingest['raw']:,.0f} readings/s without "
        f"rollups, {ingest['rollup']:,.0f} with them ({ingest['rollup'] / ingest['raw']:.2f}x).",
        "",
    ]
    return lines
