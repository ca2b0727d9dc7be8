"""The benchmark report: machine description, Markdown tables and a PNG chart."""

import contextlib
import os
import platform
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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
        ceiling = results.get("ceiling", {}).get("rows", {}).get("ceiling", {}).get("rps")
        out += _api_md(results["api"], ceiling)
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


def render_chart(results: dict[str, Any], path: Path) -> None:
    """A PNG with the api scenario's req/s and p50 per candidate, and the ceiling pair."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    api = results.get("api", [])
    heights = ([1.0] if "ceiling" in results else []) + ([2.0] * len(ENDPOINTS) if api else [])
    if not heights:
        return
    cols = 2 if api else 1
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
    fig.savefig(path, dpi=110)
    plt.close(fig)
