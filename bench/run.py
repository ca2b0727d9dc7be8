"""Benchmarks of the simulator and the edge APIs on loopback (``make bench``).

Scenarios (pick with ``--only``, repeatable):

- ``ceiling``: the simulator's ``/iot_data/device_1`` against a bare Starlette app;
- ``startup``: simulator start-up time and resident memory, 6 and 10,000 objects;
- ``api``: ``/processed_data`` and ``/client_statistics`` of every :data:`CANDIDATES`
  entry (the naive course edge and iotedge's edge), over upstream latencies and client sizes;
- ``ingest``: readings/s of ``Store.insert_readings`` in batches (with ``--before REF``,
  REF's store in the same rounds as the baseline);
- ``history``: statistics query time against the stored history of one object (1 h to 30 d);
- ``rss``: edge memory and poll-cycle time against fleet size (100 to 10,000 objects);
- ``during``: ``/processed_data`` latency while the edge polls 10,000 objects, through the
  first cycle (with its backfill) and the steady cycles (with ``--before REF``, REF's edge
  too; ``api_during_cycles.py``);
- ``load``: minutes of mixed authenticated traffic: errors, p99, memory over time;
- ``mqtt``: MQTT ingest (messages/s, readings/s) next to HTTP polling (``mqtt_bench.py``).
- ``pg`` (only with ``--only pg``; needs the PostgreSQL server on 127.0.0.1:5432): the
  PostgreSQL store's batch ingest against SQLite's, and its window statistics against
  stored history (``pg_bench.py``);
- ``scale`` (only with ``--only scale``; needs the PostgreSQL server): ``/processed_data``
  req/s of 1 and 2 ``--role api`` processes on PostgreSQL against a SQLite edge, and a
  100,000-object fleet every 30 s across 4 ``--role collector`` processes, with 1 collector
  alone as the baseline (``scale_bench.py``; ``--scale-objects``, ``--scale-collectors``,
  ``--scale-part`` and ``--scale-no-baseline`` size it);
- ``versus`` (only with ``--before REF``): this tree's edge against REF's, ``/processed_data``
  against the ceiling and the collector at 10,000 objects (``versus.py``).

Throughput comes from ``wrk``; latency percentiles from a sequential probe (httpx, one
request at a time). Candidates run side by side and are measured in alternating order,
round after round; tables show medians of the rounds (req/s) and percentiles of all
probe samples pooled. Every run is bounded in time and count. Output: ``results.md``,
``results.json`` and ``bench.png`` under ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from api_during_cycles import during_md, scenario_during
from edgeproc import edge_command, edge_env, key_of, sim_command
from fleet_bench import scenario_rss
from load_bench import scenario_load
from measure import FULL, QUICK, Measure, Profile, measure_once
from mqtt_bench import scenario_mqtt
from pg_bench import pg_md, scenario_pg
from processes import Server, free_port, say, serve
from report import ENDPOINTS, machine, render_chart, render_markdown
from scale_bench import FULL_SCALE, QUICK_SCALE, ScaleProfile, scale_md, scenario_scale
from store_bench import scenario_history, scenario_ingest
from versus import scenario_versus, versus_md
from windows_bench import scenario_windows

BENCH = Path(__file__).resolve().parent
SCENARIOS = (
    "ceiling",
    "startup",
    "api",
    "ingest",
    "history",
    "windows",
    "rss",
    "during",
    "load",
    "mqtt",
    "versus",
    "pg",
    "scale",
)
# Run only when named: they need --before REF, or a PostgreSQL server.
_ON_REQUEST = ("versus", "pg", "scale")
_SCALE_PARTS = ("api", "fleet")


# -- the edge APIs under test ----------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Launch:
    """What a candidate's start command is given."""

    port: int
    upstream: str  # the simulator's base URL
    workdir: Path  # an empty directory of the candidate's own


@dataclass(frozen=True, kw_only=True)
class Candidate:
    """An edge API measured in the ``api`` scenario.

    ``paths`` maps each of :data:`ENDPOINTS` to a path with its query, asking about
    client_1 (whose first object is device_1). ``ready_path`` is polled with ``headers``
    until it answers 200, so a candidate that must collect data first is measured warm.
    """

    name: str
    command: Callable[[Launch], list[str]]
    paths: Mapping[str, str]
    headers: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    ready_path: str = "/healthz"
    ready_timeout: float = 60.0


NAIVE = Candidate(
    name="naive",
    command=lambda launch: [
        sys.executable,
        str(BENCH / "naive_edge.py"),
        "--port",
        str(launch.port),
        "--upstream",
        launch.upstream,
        "--threads",
        "8",
    ],
    paths={
        "processed_data": "/processed_data?object_id=device_1",
        "client_statistics": "/client_statistics?client_id=client_1",
    },
    headers={"x-api-key": "naive-key-client-1"},
    ready_path="/processed_data?object_id=device_1",
)

EDGE = Candidate(
    name="edge",
    command=lambda launch: edge_command(launch.port, launch.upstream, launch.workdir),
    paths={
        "processed_data": "/processed_data?object_id=device_1",
        "client_statistics": "/client_statistics?client_id=client_1",
    },
    headers={"x-api-key": key_of("client_1")},
    env=edge_env(),
    # 200 once the collector stored device_1's backfilled history and a first poll.
    ready_path="/processed_data?object_id=device_1",
)

# The first entry is the baseline the others are compared with.
CANDIDATES: list[Candidate] = [NAIVE, EDGE]


# -- scenarios -------------------------------------------------------------------------


def scenario_ceiling(profile: Profile, log_dir: Path) -> dict[str, Any]:
    """The simulator's current reading against a bare Starlette app, interleaved."""
    sim_port, ceiling_port = free_port(), free_port()
    ceiling_argv = [sys.executable, str(BENCH / "ceiling.py"), "--port", str(ceiling_port)]
    with (
        serve("sim", sim_command(sim_port), port=sim_port, log_dir=log_dir) as sim,
        serve("ceiling", ceiling_argv, port=ceiling_port, log_dir=log_dir) as ceiling,
    ):
        targets = [
            ("simulator", sim, "/iot_data/device_1"),
            ("ceiling", ceiling, "/"),
        ]
        measures = {name: Measure() for name, _, _ in targets}
        for rnd in range(profile.rounds):
            for name, server, path in targets if rnd % 2 == 0 else targets[::-1]:
                say(f"ceiling: round {rnd + 1}/{profile.rounds} {name}")
                measure_once(
                    measures[name],
                    server.url + path,
                    profile=profile,
                    headers={},
                    servers=[sim, ceiling],
                )
    summaries = {name: measures[name].summary() for name in measures}
    rows = {name: {"path": path, **summaries[name]} for name, _, path in targets}
    return {"rows": rows, "ratio": summaries["simulator"]["rps"] / summaries["ceiling"]["rps"]}


def scenario_startup(profile: Profile, log_dir: Path) -> dict[str, Any]:
    """Simulator start-up time (process start to /healthz) and memory, small and 10k fleets."""
    fleets = [("default", 3, 2), ("10k", 1000, 10)]
    runs: dict[str, dict[str, list[float]]] = {
        name: {"ready_s": [], "rss_mib": [], "rss_after_list_mib": []} for name, _, _ in fleets
    }
    for rnd in range(profile.startup_runs):
        for name, clients, per_client in fleets if rnd % 2 == 0 else fleets[::-1]:
            say(f"startup: run {rnd + 1}/{profile.startup_runs} {name}")
            port = free_port()
            argv = sim_command(port, "--clients", str(clients), "--objects-per-client", str(per_client))
            with serve(f"sim-{name}", argv, port=port, log_dir=log_dir) as sim:
                runs[name]["ready_s"].append(sim.ready_after_s)
                runs[name]["rss_mib"].append(sim.status_kib("VmRSS") / 1024)
                last = f"device_{clients * per_client}"
                with httpx.Client(timeout=30.0) as client:
                    listed = client.get(sim.url + "/iot_objects").json()
                    client.get(f"{sim.url}/iot_data/{last}").raise_for_status()
                if len(listed) != clients * per_client:
                    raise RuntimeError(f"{name}: expected {clients * per_client} objects")
                runs[name]["rss_after_list_mib"].append(sim.status_kib("VmHWM") / 1024)
    return {
        name: {
            "objects": clients * per_client,
            "ready_s": statistics.median(runs[name]["ready_s"]),
            "ready_max_s": max(runs[name]["ready_s"]),
            "rss_mib": statistics.median(runs[name]["rss_mib"]),
            "peak_rss_mib": max(runs[name]["rss_after_list_mib"]),
            "runs": len(runs[name]["ready_s"]),
        }
        for name, clients, per_client in fleets
    }


def scenario_api(profile: Profile, log_dir: Path, candidates: Sequence[Candidate]) -> list[dict[str, Any]]:
    """Each candidate's two endpoints over upstream latencies and client sizes."""
    rows: list[dict[str, Any]] = []
    for latency in profile.latencies_ms:
        for size in profile.sizes:
            rows += _api_config(profile, log_dir, candidates, latency, size)
    return rows


def _api_config(
    profile: Profile,
    log_dir: Path,
    candidates: Sequence[Candidate],
    latency: int,
    size: int,
) -> list[dict[str, Any]]:
    sim_port = free_port()
    sim_argv = sim_command(
        sim_port, "--clients", "3", "--objects-per-client", str(size), "--latency-ms", str(latency)
    )
    with contextlib.ExitStack() as stack:
        sim = stack.enter_context(serve("sim", sim_argv, port=sim_port, log_dir=log_dir))
        servers: dict[str, Server] = {}
        for cand in candidates:
            port = free_port()
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=cand.name)))
            launch = Launch(port=port, upstream=sim.url, workdir=workdir)
            servers[cand.name] = stack.enter_context(
                serve(
                    cand.name,
                    cand.command(launch),
                    port=port,
                    log_dir=log_dir,
                    ready_path=cand.ready_path,
                    headers=cand.headers,
                    env=cand.env,
                    timeout=cand.ready_timeout,
                )
            )
        everyone = [sim, *servers.values()]
        measures = {(c.name, ep): Measure() for c in candidates for ep in ENDPOINTS}
        for rnd in range(profile.rounds):
            order = list(candidates) if rnd % 2 == 0 else list(candidates)[::-1]
            for cand in order:
                for endpoint in ENDPOINTS:
                    say(
                        f"api: {latency} ms, {size} objects, round {rnd + 1}/{profile.rounds}"
                        f" {cand.name} {endpoint}"
                    )
                    measure_once(
                        measures[(cand.name, endpoint)],
                        servers[cand.name].url + cand.paths[endpoint],
                        profile=profile,
                        headers=cand.headers,
                        servers=everyone,
                    )
        peak = {name: server.status_kib("VmHWM") / 1024 for name, server in servers.items()}
    return [
        {
            "candidate": cand.name,
            "endpoint": endpoint,
            "latency_ms": latency,
            "objects": size,
            "peak_rss_mib": peak[cand.name],
            **measures[(cand.name, endpoint)].summary(),
        }
        for endpoint in ENDPOINTS
        for cand in candidates
    ]


def _scale_profile(parser: argparse.ArgumentParser, args: argparse.Namespace) -> ScaleProfile:
    """The scale scenario's profile, from --quick and the --scale-* options (checked here)."""
    profile = QUICK_SCALE if args.quick else FULL_SCALE
    sized = args.scale_objects is not None or args.scale_collectors is not None or args.scale_part
    if (sized or args.scale_no_baseline) and "scale" not in (args.only or []):
        parser.error(
            "--scale-objects, --scale-collectors, --scale-part and --scale-no-baseline need --only scale"
        )
    if args.scale_no_baseline:
        profile = dataclasses.replace(profile, baseline_max_seconds=0)
    if args.scale_collectors is not None:
        if args.scale_collectors < 1:
            parser.error("--scale-collectors must be at least 1")
        profile = dataclasses.replace(profile, collectors=args.scale_collectors)
    if args.scale_objects is not None:
        if args.scale_objects < 10 or args.scale_objects % 10 or args.scale_objects > 100_000:
            parser.error("--scale-objects must be a multiple of 10, from 10 to 100000")
        profile = dataclasses.replace(profile, clients=args.scale_objects // 10, objects_per_client=10)
    if profile.collectors > profile.clients:
        parser.error(f"--scale-collectors: {profile.collectors} collectors for {profile.clients} clients")
    return profile


# -- main ------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen scenarios and write the report."""
    parser = argparse.ArgumentParser(description="iotedge benchmarks (make bench).")
    parser.add_argument("--quick", action="store_true", help="a short smoke version")
    parser.add_argument(
        "--only", action="append", choices=SCENARIOS, help="run only this scenario (repeatable)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="where results go [default: bench/results, or bench/results/quick with --quick]",
    )
    parser.add_argument(
        "--before",
        metavar="REF",
        help="git commit whose edge the versus scenario compares with this tree's (and whose store"
        " the ingest scenario measures beside this tree's)",
    )
    parser.add_argument(
        "--api-only", action="store_true", help="versus: only the API part (no 10,000-object fleet)"
    )
    parser.add_argument(
        "--fleet-only", action="store_true", help="versus: only the 10,000-object fleet part (no API rounds)"
    )
    parser.add_argument(
        "--scale-objects",
        type=int,
        metavar="N",
        help="scale: objects of the simulated fleet, a multiple of 10 [default: 100000; quick: 100]",
    )
    parser.add_argument(
        "--scale-collectors",
        type=int,
        metavar="N",
        help="scale: collector processes sharing the fleet [default: 4; quick: 2]",
    )
    parser.add_argument(
        "--scale-part",
        action="append",
        choices=_SCALE_PARTS,
        help="scale: run only this part (repeatable) [default: both]",
    )
    parser.add_argument(
        "--scale-no-baseline",
        action="store_true",
        help="scale: skip the single collector run after the sharded one",
    )
    args = parser.parse_args(argv)
    scale = _scale_profile(parser, args)
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (Debian package wrk)")
    profile = QUICK if args.quick else FULL
    chosen = args.only or [s for s in SCENARIOS if s not in _ON_REQUEST or (s == "versus" and args.before)]
    if "versus" in chosen and not args.before:
        parser.error("the versus scenario needs --before REF")
    out: Path = args.out or (BENCH / "results" / ("quick" if args.quick else ""))
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "machine": machine(),
        "quick": args.quick,
        "profile": dataclasses.asdict(profile),
        "candidates": [c.name for c in CANDIDATES],
    }
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="iotedge-bench-") as tmp:
        log_dir = Path(tmp)
        if "ceiling" in chosen:
            results["ceiling"] = scenario_ceiling(profile, log_dir)
        if "startup" in chosen:
            results["startup"] = scenario_startup(profile, log_dir)
        if "api" in chosen:
            results["api"] = scenario_api(profile, log_dir, CANDIDATES)
        if "ingest" in chosen:
            results["ingest"] = scenario_ingest(profile, args.before)
        if "history" in chosen:
            results["history"] = scenario_history(profile, log_dir)
        if "windows" in chosen:
            results["windows"] = scenario_windows(profile)
        if "rss" in chosen:
            results["rss"] = scenario_rss(profile, log_dir)
        if "during" in chosen:
            results["during"] = scenario_during(args.quick, args.before)
        if "load" in chosen:
            results["load"] = scenario_load(profile, log_dir)
        if "mqtt" in chosen:
            sizes = (5_000, 100, 100, 2) if args.quick else (60_000, 1_000, 1_000, 3)
            results["mqtt"] = scenario_mqtt(*sizes, log_dir)
        if "versus" in chosen:
            results["versus"] = scenario_versus(
                profile, log_dir, args.before, api_only=args.api_only, fleet_only=args.fleet_only
            )
        if "pg" in chosen:
            results["pg"] = scenario_pg(quick=args.quick)
        if "scale" in chosen:
            results["scale"] = scenario_scale(scale, log_dir, parts=args.scale_part or _SCALE_PARTS)
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    markdown = render_markdown(results)
    if "during" in results:
        markdown += "\n" + "\n".join(during_md(results["during"]))
    if "versus" in results:
        markdown += "\n" + "\n".join(versus_md(results["versus"]))
    if "pg" in results:
        markdown += "\n" + "\n".join(pg_md(results["pg"]))
    if "scale" in results:
        markdown += "\n" + "\n".join(scale_md(results["scale"]))
    (out / "results.md").write_text(markdown)
    render_chart(results, out / "bench.png")
    print(markdown)
    say(f"done in {results['elapsed_s']} s; wrote {out}/results.md, results.json, bench.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
