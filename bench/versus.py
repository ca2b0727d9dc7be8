"""This tree's edge against an earlier commit's, in one run (the ``versus`` scenario).

The earlier edge is the ``src/`` of ``--before REF`` (``git archive``), run by the same
interpreter with ``PYTHONPATH`` pointing at it, so both use the same installed
dependencies and the same simulator. Two parts:

- ``api``: ``/processed_data`` and ``/client_statistics`` of each edge and a bare Starlette
  app (the ceiling), with wrk in interleaved rounds; ratios to the ceiling of the same
  round set (``--api-only`` stops here; ``--fleet-only`` skips it);
- ``fleet``: each edge polling the profile's largest fleet (10,000 objects; 100 with
  ``--quick``) every 5 s, one after the other: first cycle (with backfill), steady cycle
  time, RSS, CPU (``fleet_bench.run_fleet``).
"""

import contextlib
import dataclasses
import io
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from edgeproc import edge_command, edge_env, key_of, sim_command
from fleet_bench import run_fleet
from measure import Measure, Profile, measure_once
from processes import Server, free_port, say, serve

__all__ = ["export_src", "scenario_versus", "short_commit", "versus_md"]

BENCH = Path(__file__).resolve().parent
_PATH = "/processed_data?object_id=device_1"
_CLIENT_PATH = "/client_statistics?client_id=client_1"
_TICK = os.sysconf("SC_CLK_TCK")


def export_src(ref: str, into: Path) -> Path:
    """``src/`` of ``ref`` under ``into``; returns the directory to put on PYTHONPATH."""
    archive = subprocess.run(
        ["git", "-C", str(BENCH.parent), "archive", "--format=tar", ref, "src"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def short_commit(ref: str) -> str:
    out = subprocess.run(
        ["git", "-C", str(BENCH.parent), "rev-parse", "--short", ref],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return out.stdout.strip()


def scenario_versus(
    profile: Profile, log_dir: Path, before: str, *, api_only: bool = False, fleet_only: bool = False
) -> dict[str, Any]:
    """Both parts (or one of them alone), ``before`` against the working tree."""
    with tempfile.TemporaryDirectory(prefix="iotedge-before-") as tmp:
        pythonpath = str(export_src(before, Path(tmp)))
        envs = {"before": {"PYTHONPATH": pythonpath}, "after": {}}
        api = {} if fleet_only else _api(profile, log_dir, envs)
        if api_only:
            return {"before_ref": before, "before_commit": short_commit(before), "api": api, "fleet": {}}
        fleet_profile = dataclasses.replace(profile, rss_polls=min(profile.rss_polls, 3), rss_max_seconds=300)
        fleet: dict[str, Any] = {}
        objects = max(profile.fleets)
        for name, env in envs.items():
            say(f"versus: fleet of {objects:,}, {name}")
            row = run_fleet(fleet_profile, log_dir, objects, extra_env=env)
            row.pop("rss_series")
            fleet[name] = row
    return {"before_ref": before, "before_commit": short_commit(before), "api": api, "fleet": fleet}


def _api(profile: Profile, log_dir: Path, envs: dict[str, dict[str, str]]) -> dict[str, Any]:
    headers = {"x-api-key": key_of("client_1")}
    sim_port, ceiling_port = free_port(), free_port()
    with contextlib.ExitStack() as stack:
        sim = stack.enter_context(serve("sim", sim_command(sim_port), port=sim_port, log_dir=log_dir))
        ceiling_argv = [sys.executable, str(BENCH / "ceiling.py"), "--port", str(ceiling_port)]
        targets: list[tuple[str, Server, str, dict[str, str]]] = [
            (
                "ceiling",
                stack.enter_context(serve("ceiling", ceiling_argv, port=ceiling_port, log_dir=log_dir)),
                "/",
                {},
            )
        ]
        for name, env in envs.items():
            port = free_port()
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"edge-{name}-")))
            edge = serve(
                f"edge-{name}",
                edge_command(port, sim.url, workdir),
                port=port,
                log_dir=log_dir,
                ready_path=_PATH,
                headers=headers,
                env={**edge_env(), **env},
                timeout=60,
            )
            server = stack.enter_context(edge)
            targets.append((name, server, _PATH, headers))
            targets.append((f"{name} /client_statistics", server, _CLIENT_PATH, headers))
        everyone = [sim, *(server for _, server, _, _ in targets)]
        measures = {name: Measure() for name, _, _, _ in targets}
        ticks = dict.fromkeys(measures, 0)
        for rnd in range(profile.rounds):
            for name, server, path, hdrs in targets if rnd % 2 == 0 else targets[::-1]:
                say(f"versus: api round {rnd + 1}/{profile.rounds} {name}")
                before = server.cpu_ticks()
                measure_once(
                    measures[name], server.url + path, profile=profile, headers=hdrs, servers=everyone
                )
                ticks[name] += server.cpu_ticks() - before
    rows: dict[str, dict[str, Any]] = {name: dict(measure.summary()) for name, measure in measures.items()}
    for name, row in rows.items():
        # Server CPU over the rounds (probe and wrk) per request served: a busy machine
        # slows every server down, but changes what one request costs much less.
        row["cpu_us_per_request"] = 1e6 * ticks[name] / _TICK / max(1, measures[name].requests)
    ceiling_rps = rows["ceiling"]["rps"]
    for row in rows.values():
        row["ratio_to_ceiling"] = row["rps"] / ceiling_rps
    return rows


def _cpu_per_cycle(row: dict[str, Any]) -> float:
    """Edge CPU seconds per steady cycle (run_fleet gives % of wall and polls per second)."""
    if not row["polls_per_s"]:
        return float("nan")
    wall_per_cycle = float(row["objects"]) / float(row["polls_per_s"])
    return float(row["edge_cpu_pct"]) / 100 * wall_per_cycle


def versus_md(data: dict[str, Any]) -> list[str]:
    """The scenario's section of results.md."""
    out = [f"## Before ({data['before_ref']} = {data['before_commit']}) and after, one run", ""]
    if data["api"]:
        out += _api_md(data["api"])
    if not data["fleet"]:
        return out
    objects = max(row["objects"] for row in data["fleet"].values())
    out += [
        f"Collector, {objects:,} objects polled every 5 s, each edge alone, one after the other"
        " (cycle time: mean of the steady cycles; CPU s per cycle: the edge's user + system time"
        " over the steady cycles, divided by their number, the figure a busy machine disturbs least):",
        "",
        "| edge | first cycle s | CPU s to first cycle end | steady cycles | mean steady cycle s | keeps up"
        " | median RSS MiB | peak RSS MiB | edge CPU % | edge CPU s per cycle | sim CPU % |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, row in data["fleet"].items():
        out.append(
            f"| {name} | {row['first_cycle_s']:.1f} | {row.get('first_cycle_cpu_s', float('nan')):.1f}"
            f" | {row['cycles']} | {row['mean_cycle_s']:.2f}"
            f" | {'yes' if row['keeps_up'] else 'no'} | {row['rss_median_mib']:.0f}"
            f" | {row['peak_rss_mib']:.0f}"
            f" | {row['edge_cpu_pct']:.0f} | {_cpu_per_cycle(row):.2f} | {row['sim_cpu_pct']:.0f} |"
        )
    out.append("")
    return out


def _api_md(api: dict[str, Any]) -> list[str]:
    out = [
        "`GET /processed_data` and `/client_statistics` (authenticated, rate limits off) and a bare"
        " Starlette app, wrk rounds"
        " interleaved; req/s are medians over rounds.",
        "",
        "| server | req/s | x ceiling | p50 ms | p99 ms | server CPU µs per request | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, row in api.items():
        out.append(
            f"| {name} | {row['rps']:,.0f} | {row['ratio_to_ceiling']:.2f} | {row['p50_ms']:.2f}"
            f" | {row['p99_ms']:.2f} | {row['cpu_us_per_request']:.0f} | {row['errors']} |"
        )
    speedup = api["after"]["rps"] / api["before"]["rps"]
    saving = api["before"]["cpu_us_per_request"] / api["after"]["cpu_us_per_request"]
    return [*out, "", f"After / before: {speedup:.2f}x req/s; {saving:.2f}x less CPU per request.", ""]
