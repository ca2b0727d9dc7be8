"""The benchmark report: machine description, Markdown tables and a PNG chart."""

import contextlib
import os
import platform
import subprocess
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mqtt_bench import render as render_mqtt
from windows_bench import windows_md

__all__ = ["ENDPOINTS", "machine", "render_chart", "render_markdown"]

ENDPOINTS = ("processed_data", "client_statistics")


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "os": platform.platform(),
        "wrk": wrk_version.stdout.split(" [")[0].strip() or "wrk",
        "load_at_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _fmt(value: float, digits: int = 1) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def render_markdown(results: dict[str, Any]) -> str:
    """The results as Markdown tables."""
    info = results["machine"]
    prof = results["profile"]
    out = [
        "# iotedge benchmarks",
        "",
        f"Written by `bench/run.py` ({'--quick' if results['quick'] else 'full run'}) "
        f"on {info['date']}. Reproduce with `make bench`; all servers and wrk share the "
        "machine below, on 127.0.0.1.",
        "",
        "## Machine",
        "",
        *_table(
            ["CPU", "cores (usable)", "memory", "Python", "OS", "wrk", "load at start"],
            [
                [
                    info["cpu"],
                    f"{info['cores']} ({info['usable_cores']})",
                    f"{info['memory_gib']} GiB",
                    info["python"],
                    info["os"],
                    info["wrk"],
                    info["load_at_start"],
                ]
            ],
        ),
        "",
        "## Method",
        "",
        f"Each pair is measured in {prof['rounds']} round(s), the candidates in alternating "
        f"order. A round is a sequential latency probe (httpx, keep-alive, up to "
        f"{prof['probe_requests']} requests or {prof['probe_seconds']} s) then wrk "
        f"(1 thread, {prof['connections']} connections, {prof['wrk_seconds']} s, longer "
        f"for slow endpoints, up to {prof['wrk_max_seconds']} s), each after the servers "
        "went idle. req/s is the median of the rounds; p50/p95/p99 are over all probe "
        "samples (n). Errors count socket errors and non-2xx answers of both tools.",
        "",
    ]
    if "ceiling" in results:
        out += _ceiling_md(results["ceiling"])
    if "startup" in results:
        out += _startup_md(results["startup"])
    if "api" in results:
        ceiling_row = results.get("ceiling", {}).get("rows", {}).get("ceiling")
        out += _api_md(results["api"], ceiling_row["rps"] if ceiling_row else None)
        out += _ratios_md(results["api"], ceiling_row)
    if "ingest" in results:
        out += _ingest_md(results["ingest"])
    if "history" in results:
        out += _history_md(results["history"])
    if "windows" in results:
        out += windows_md(results["windows"])
    if "rss" in results:
        out += _rss_md(results["rss"])
    if "load" in results:
        out += _load_md(results["load"])
    if "mqtt" in results:
        out += ["## MQTT ingest against HTTP polling", "", render_mqtt(results["mqtt"]), ""]
    return "\n".join(out) + "\n"


def _ceiling_md(data: dict[str, Any]) -> list[str]:
    rows = [
        [
            name,
            f"`{row['path']}`",
            _fmt(row["rps"]),
            f"{row['p50_ms']:.2f}",
            f"{row['p95_ms']:.2f}",
            f"{row['p99_ms']:.2f}",
            str(row["errors"]),
        ]
        for name, row in data["rows"].items()
    ]
    return [
        "## Simulator against the ceiling",
        "",
        "`iotedge sim` (default fleet, started by its CLI) against a bare Starlette app "
        "with a fixed JSON body (`bench/ceiling.py`: iotedge's uvicorn settings, uvicorn's "
        "own event loop choice, uvloop when installed), one process each.",
        "",
        *_table(["server", "path", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors"], rows),
        "",
        f"**Simulator / ceiling: {data['ratio']:.2f}** (target: at least 0.5).",
        "",
    ]


def _startup_md(data: dict[str, Any]) -> list[str]:
    rows = [
        [
            name,
            f"{row['objects']:,}",
            f"{row['ready_s']:.2f}",
            f"{row['ready_max_s']:.2f}",
            f"{row['rss_mib']:.1f}",
            f"{row['peak_rss_mib']:.1f}",
            str(row["runs"]),
        ]
        for name, row in data.items()
    ]
    return [
        "## Simulator start-up",
        "",
        "From process start (interpreter and imports included) until `/healthz` answers; "
        "RSS from `/proc/<pid>/status` when ready, and the peak (VmHWM) after serving the "
        "whole catalogue once.",
        "",
        *_table(
            [
                "fleet",
                "objects",
                "ready s (median)",
                "ready s (max)",
                "RSS MiB",
                "peak RSS MiB",
                "runs",
            ],
            rows,
        ),
        "",
    ]


def _api_md(rows: list[dict[str, Any]], ceiling_rps: float | None) -> list[str]:
    baseline = rows[0]["candidate"] if rows else ""
    compare = len({r["candidate"] for r in rows}) > 1
    base_rps = {
        (r["endpoint"], r["latency_ms"], r["objects"]): r["rps"] for r in rows if r["candidate"] == baseline
    }
    header = ["endpoint", "upstream ms", "objects", "candidate", "req/s"]
    header += ["p50 ms", "p95 ms", "p99 ms", "n", "errors", "peak RSS MiB"]
    header += [f"vs {baseline}"] if compare else []
    header += ["% of ceiling"] if ceiling_rps else []
    table = []
    for r in rows:
        line = [
            f"`/{r['endpoint']}`",
            str(r["latency_ms"]),
            str(r["objects"]),
            r["candidate"],
            _fmt(r["rps"]),
            _fmt(r["p50_ms"]),
            _fmt(r["p95_ms"]),
            _fmt(r["p99_ms"]),
            str(r["samples"]),
            str(r["errors"]),
            f"{r['peak_rss_mib']:.0f}",
        ]
        if compare:
            line.append(f"{r['rps'] / base_rps[(r['endpoint'], r['latency_ms'], r['objects'])]:.2f}")
        if ceiling_rps:
            line.append(f"{100 * r['rps'] / ceiling_rps:.2g}")
        table.append(line)
    ratios = [f"against `{baseline}`"] if compare else []
    ratios += ["as a share of the ceiling app's"] if ceiling_rps else []
    return [
        "## Edge APIs",
        "",
        "Each candidate serves client_1 (`/processed_data?object_id=device_1`, "
        "`/client_statistics?client_id=client_1`) from a simulator with 3 clients of "
        "*objects* objects each and *upstream ms* of added latency per device API call. "
        "`naive` is `bench/naive_edge.py` (Flask + requests on waitress, 8 threads). "
        "req/s counts requests completed within wrk's run"
        + (f"; it is also given {' and '.join(ratios)}." if ratios else "."),
        "",
        *_table(header, table),
        "",
    ]


def _ratios_md(rows: list[dict[str, Any]], ceiling: dict[str, Any] | None) -> list[str]:
    """Edge against the naive edge and the ceiling app, side by side."""
    by_key = {(r["candidate"], r["endpoint"], r["latency_ms"], r["objects"]): r for r in rows}
    configs = list(dict.fromkeys((r["endpoint"], r["latency_ms"], r["objects"]) for r in rows))
    if not all(("edge", *c) in by_key and ("naive", *c) in by_key for c in configs) or not configs:
        return []
    header = ["endpoint", "upstream ms", "objects", "edge req/s", "naive req/s", "edge / naive req/s"]
    header += ["edge p50 ms", "naive p50 ms", "naive / edge p50", "edge p99 ms", "naive p99 ms"]
    header += ["naive / edge p99"]
    header += ["edge / ceiling req/s", "edge / ceiling p50"] if ceiling else []
    table = []
    for endpoint, latency, objects in configs:
        edge, naive = (
            by_key[("edge", endpoint, latency, objects)],
            by_key[("naive", endpoint, latency, objects)],
        )
        line = [
            f"`/{endpoint}`",
            str(latency),
            str(objects),
            _fmt(edge["rps"]),
            _fmt(naive["rps"]),
            f"**{edge['rps'] / naive['rps']:.1f}**",
            f"{edge['p50_ms']:.2f}",
            _fmt(naive["p50_ms"]),
            f"**{naive['p50_ms'] / edge['p50_ms']:.1f}**",
            f"{edge['p99_ms']:.2f}",
            _fmt(naive["p99_ms"]),
            f"{naive['p99_ms'] / edge['p99_ms']:.1f}",
        ]
        if ceiling:
            line += [f"{edge['rps'] / ceiling['rps']:.3f}", f"{edge['p50_ms'] / ceiling['p50_ms']:.1f}"]
        table.append(line)
    return [
        "### Edge against naive and ceiling",
        "",
        "Ratios from the table above: *edge / naive req/s* is how many times more requests the "
        "edge serves; *naive / edge p50* and *p99* how many times faster it answers. "
        + (
            "*edge / ceiling req/s* is the edge's share of the bare Starlette app's throughput and "
            "*edge / ceiling p50* how many times the ceiling's latency it takes."
            if ceiling
            else ""
        ),
        "",
        *_table(header, table),
        "",
    ]


def _ingest_md(rows: list[dict[str, Any]]) -> list[str]:
    table = [
        [
            r["store"],
            f"{r['batch']:,}",
            f"{r['readings_per_round']:,}",
            str(r["rounds"]),
            f"**{r['readings_per_s']:,.0f}**",
            f"{r['x_baseline']:.2f}" if "x_baseline" in r else "",
            f"{r['min_readings_per_s']:,.0f}",
            f"{r['max_readings_per_s']:,.0f}",
            f"{r['batch_p50_ms']:.2f}",
            f"{r['batch_p99_ms']:.2f}",
            f"{r['cpu_us_per_reading']:.1f}",
        ]
        for r in rows
    ]
    return [
        "## Ingest",
        "",
        "`Store.insert_readings` into a fresh store on disk, one process per round (WAL, "
        "`synchronous=FULL`: each batch is one committed, fsynced transaction that also updates "
        "the latest values and the rollups). Batches look like poll cycles: objects with two "
        "metrics each, 5 s apart. readings/s is the median of the rounds (target: at least "
        "100,000 in batches of 1,000); with `--before REF`, REF's store ran in the same rounds, "
        "in alternating order, and x baseline is this tree's median over REF's. CPU µs per "
        "reading: the round process's user + system time in `insert_readings` (median).",
        "",
        *_table(
            [
                "store",
                "batch",
                "readings per round",
                "rounds",
                "readings/s (median)",
                "x baseline",
                "min",
                "max",
                "batch p50 ms",
                "batch p99 ms",
                "CPU µs per reading",
            ],
            table,
        ),
        "",
    ]


def _history_md(rows: list[dict[str, Any]]) -> list[str]:
    table = [
        [
            r["history"],
            f"{r['rows']:,}",
            f"{r['store_mib']:.1f}",
            f"{r['window_count']:,}",
            f"{r['summary_day_p50_ms']:.2f}",
            f"{r['summary_all_p50_ms']:.2f}",
            f"**{r['endpoint_p50_ms']:.2f}**",
            f"{r['endpoint_p99_ms']:.2f}",
            _fmt(r["endpoint_rps"]),
            str(r["errors"]),
        ]
        for r in rows
    ]
    return [
        "## Statistics against stored history",
        "",
        "One object (device_1, two metrics) with one reading per metric every 5 s, written "
        "straight into the store. `Store.summary` is timed in-process over the last day and "
        "over the whole history; `/processed_data` over the history's last day is timed on an "
        "edge process opened on that store while it polls a simulator (sequential probe for "
        "p50/p99, wrk for req/s). The endpoint computes both metrics' statistics. "
        "Target: a day in single-digit milliseconds.",
        "",
        *_table(
            [
                "stored history",
                "rows",
                "store MiB",
                "readings in the day window",
                "summary 1 d p50 ms",
                "summary whole history p50 ms",
                "`/processed_data` 1 d p50 ms",
                "p99 ms",
                "req/s",
                "errors",
            ],
            table,
        ),
        "",
    ]


def _rss_md(rows: list[dict[str, Any]]) -> list[str]:
    table = [
        [
            f"{r['objects']:,}",
            f"{r['first_cycle_s']:.2f}",
            str(r["cycles"]),
            f"**{r['mean_cycle_s']:.2f}**",
            "yes" if r["keeps_up"] else "**no**",
            f"{r['polls_per_s']:,.0f}",
            f"{r['rss_after_first_mib']:.0f}",
            f"**{r['rss_end_mib']:.0f}**",
            f"{r['peak_rss_mib']:.0f}",
            f"{r['edge_cpu_pct']:.0f}",
            f"{r['sim_cpu_pct']:.0f}",
            f"{r['scrape_p50_ms']:.0f}",
        ]
        for r in rows
    ]
    return [
        "## Edge memory and poll cycles against fleet size",
        "",
        "An edge polls a simulator of *objects* objects (10 per client) every 5 s, with its "
        "metrics port on; a scrape every 5 s counts finished cycles "
        "(`iotedge_collector_cycle_duration_seconds`). The first cycle also backfills each new "
        "object's history; *cycles* are the ones after it, and *mean cycle* their average "
        "duration: the poll keeps up when it is at most 5 s. RSS (`/proc/<pid>/status`) is "
        "sampled every second; CPU is % of one core over the steady cycles. "
        "Target: under 150 MB at 10,000 objects.",
        "",
        *_table(
            [
                "objects",
                "first cycle s",
                "cycles",
                "mean cycle s",
                "keeps up with 5 s",
                "polls/s",
                "RSS after first MiB",
                "RSS at end MiB",
                "peak RSS MiB",
                "edge CPU %",
                "sim CPU %",
                "scrape ms",
            ],
            table,
        ),
        "",
    ]


def _load_md(data: dict[str, Any]) -> list[str]:
    statuses = ", ".join(f"{k}: {v}" for k, v in data["by_status"].items()) or "none"
    return [
        "## Load test",
        "",
        f"{data['seconds']:.0f} s of wrk (1 thread, {data['connections']} connections, "
        f"`bench/load.lua`) walking {data['distinct_requests']} distinct requests, each with "
        "its client's own key: every object's `/processed_data`, each client's "
        "`/client_statistics`, `/objects` and `/anomalies`, and the cloud key's views; the "
        f"edge polls {data['objects']} objects every 5 s meanwhile. Latency percentiles are "
        "wrk's, under that load. RSS is sampled every 2 s after a warm-up.",
        "",
        *_table(
            [
                "requests",
                "req/s",
                "non-2xx",
                "socket errors",
                "p50 ms",
                "p90 ms",
                "p99 ms",
                "max ms",
                "RSS start MiB",
                "RSS middle MiB",
                "RSS end MiB",
                "edge CPU %",
            ],
            [
                [
                    f"{data['requests']:,}",
                    _fmt(data["rps"]),
                    f"**{data['non2xx']}**",
                    str(data["socket_errors"]),
                    f"{data['p50_ms']:.1f}",
                    f"{data['p90_ms']:.1f}",
                    f"**{data['p99_ms']:.1f}**",
                    f"{data['max_ms']:.1f}",
                    f"{data['rss_start_mib']:.1f}",
                    f"{data['rss_middle_mib']:.1f}",
                    f"{data['rss_end_mib']:.1f}",
                    f"{data['edge_cpu_pct']:.0f}",
                ]
            ],
        ),
        "",
        f"Answers outside 2xx by status: {statuses}. "
        f"RSS grew {data['rss_end_mib'] - data['rss_start_mib']:+.1f} MiB over the run "
        f"(peak {data['peak_rss_mib']:.1f} MiB); the edge was "
        f"{'still running' if data['edge_alive'] else 'NOT running'} at the end.",
        "",
    ]


def render_chart(results: dict[str, Any], path: Path) -> None:
    """A PNG: ceiling pair, api req/s and p50 per candidate, history, fleet memory, load RSS."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.axes import Axes

    api = results.get("api", [])
    extras: list[Callable[[Axes], None]] = []
    if results.get("history"):
        extras.append(lambda ax: _history_panel(ax, results["history"]))
    if results.get("rss"):
        extras.append(lambda ax: _rss_panel(ax, results["rss"]))
    if results.get("load"):
        extras.append(lambda ax: _load_panel(ax, results["load"]))
    cols = 2 if api or len(extras) > 1 else 1
    extra_rows = (len(extras) + cols - 1) // cols
    heights = ([1.0] if "ceiling" in results else []) + ([2.0] * len(ENDPOINTS) if api else [])
    heights += [1.8] * extra_rows
    if not heights:
        return
    fig = plt.figure(figsize=(6.5 * cols, 2.2 * sum(heights)), layout="constrained")
    grid = fig.add_gridspec(len(heights), cols, height_ratios=heights)
    row = 0
    if "ceiling" in results:
        ax = fig.add_subplot(grid[row, :])
        names = list(results["ceiling"]["rows"])
        values = [results["ceiling"]["rows"][n]["rps"] for n in names]
        ax.barh(names, values, color=["tab:blue", "tab:gray"][: len(names)])
        ax.set_xlabel("req/s (higher is better)")
        ax.set_title(f"Simulator vs ceiling: ratio {results['ceiling']['ratio']:.2f}")
        row += 1
    if api:
        _api_panels(fig, grid, row, api)
        row += len(ENDPOINTS)
    for index, draw in enumerate(extras):
        draw(fig.add_subplot(grid[row + index // cols, index % cols]))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _api_panels(fig: Any, grid: Any, row: int, api: list[dict[str, Any]]) -> None:
    candidates = list(dict.fromkeys(r["candidate"] for r in api))
    configs = list(dict.fromkeys((r["latency_ms"], r["objects"]) for r in api))
    labels = [f"{lat} ms\n{n} obj" for lat, n in configs]
    width = 0.8 / len(candidates)
    for endpoint in ENDPOINTS:
        for col, (key, title) in enumerate(
            (("rps", "req/s (higher is better)"), ("p50_ms", "p50 ms (lower is better)"))
        ):
            ax = fig.add_subplot(grid[row, col])
            for i, cand in enumerate(candidates):
                lookup = {
                    (r["latency_ms"], r["objects"]): r[key]
                    for r in api
                    if r["candidate"] == cand and r["endpoint"] == endpoint
                }
                xs = [j + i * width for j in range(len(configs))]
                ax.bar(xs, [lookup[c] for c in configs], width, label=cand)
            ax.set_xticks([j + width * (len(candidates) - 1) / 2 for j in range(len(configs))])
            ax.set_xticklabels(labels, fontsize=7)
            ax.set_yscale("log")
            ax.set_title(f"/{endpoint}: {title}", fontsize=10)
            ax.legend(fontsize=8)
        row += 1


def _history_panel(ax: Any, rows: list[dict[str, Any]]) -> None:
    labels = [r["history"] for r in rows]
    ax.plot(labels, [r["endpoint_p50_ms"] for r in rows], "o-", label="/processed_data 1 d p50")
    ax.plot(labels, [r["summary_day_p50_ms"] for r in rows], "s-", label="Store.summary 1 d")
    ax.plot(labels, [r["summary_all_p50_ms"] for r in rows], "^--", label="Store.summary, all history")
    ax.set_yscale("log")
    ax.set_xlabel("stored history of the object")
    ax.set_ylabel("ms")
    ax.set_title("Statistics time against history size", fontsize=10)
    ax.legend(fontsize=7)


def _rss_panel(ax: Any, rows: list[dict[str, Any]]) -> None:
    labels = [f"{r['objects']:,}" for r in rows]
    ax.bar(labels, [r["rss_end_mib"] for r in rows], color="tab:blue", label="RSS at end")
    ax.axhline(150 / 1.048576, color="tab:red", linestyle="--", linewidth=1, label="150 MB")
    ax.set_xlabel("objects polled every 5 s")
    ax.set_ylabel("MiB")
    twin = ax.twinx()
    twin.plot(labels, [r["mean_cycle_s"] for r in rows], "ko-", label="mean cycle s")
    twin.axhline(5.0, color="gray", linestyle=":", linewidth=1)
    twin.set_ylabel("cycle s")
    ax.set_title("Edge RSS and poll cycle against fleet size", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")


def _load_panel(ax: Any, data: dict[str, Any]) -> None:
    times = [t for t, _ in data["rss_series"]]
    ax.plot(times, [mib for _, mib in data["rss_series"]], color="tab:blue")
    ax.set_ylim(0, max(mib for _, mib in data["rss_series"]) * 1.3)
    ax.set_xlabel("s into the load test")
    ax.set_ylabel("edge RSS MiB")
    ax.set_title(
        f"Load: {data['rps']:,.0f} req/s, p99 {data['p99_ms']:.1f} ms, {data['non2xx']} non-2xx",
        fontsize=10,
    )
