"""API latency while the collector polls a large fleet: during the first cycle and after it.

The ``during`` scenario of ``bench/run.py``. An edge (this tree's, and with ``--before REF``
that commit's ``src/`` too) polls a simulator of ``objects`` objects every 5 s; one client
sends ``GET /processed_data`` every 0.2 s through the first cycle (with its history
backfill) and for ``steady_s`` seconds of steady cycles. Sequential requests: a long answer
is the event loop held by the collector. Alone: ``.venv/bin/python bench/api_during_cycles.py
[--before REF]`` (about two minutes for 10,000 objects).
"""

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from edgeproc import edge_command, edge_env, key_of, sim_command
from fleet_bench import _fleet_args
from processes import free_port, serve
from versus import export_src, short_commit

__all__ = ["during_md", "main", "measure_during", "scenario_during"]

_DEADLINE_S = 300.0
_PHASES = ("first cycle", "steady")


def _summary(seconds: list[float]) -> dict[str, Any]:
    ordered = sorted(seconds)
    if not ordered:
        return {"n": 0}
    return {
        "n": len(ordered),
        "p50_ms": round(1000 * ordered[len(ordered) // 2], 1),
        "p99_ms": round(1000 * ordered[int(len(ordered) * 0.99)], 1),
        "max_ms": round(1000 * ordered[-1], 1),
    }


def measure_during(objects: int, steady_s: float, before: str | None = None) -> dict[str, Any]:
    """One edge's answers during its first cycle and its steady cycles (p50, p99, slowest)."""
    sim_port, port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="iotedge-during-") as tmp:
        work = Path(tmp)
        env = edge_env() | ({"PYTHONPATH": str(export_src(before, work))} if before else {})
        with (
            serve("sim", sim_command(sim_port, *_fleet_args(objects)), port=sim_port, log_dir=work) as sim,
            serve(
                "edge", edge_command(port, sim.url, work), port=port, log_dir=work, env=env, timeout=60
            ) as edge,
            httpx.Client(timeout=30.0) as client,
        ):
            data = {"x-api-key": key_of("client_1")}
            status = {"x-api-key": key_of("*")}
            phases: dict[str, list[float]] = {phase: [] for phase in _PHASES}
            started = time.monotonic()
            first_end: float | None = None
            while time.monotonic() - started < _DEADLINE_S:
                sent = time.perf_counter()
                client.get(edge.url + "/processed_data?object_id=device_1", headers=data)
                took = time.perf_counter() - sent
                cycles = client.get(edge.url + "/status", headers=status).json()["collector"]["cycles"]
                if cycles and first_end is None:
                    first_end = time.monotonic() - started
                phases["steady" if cycles else "first cycle"].append(took)
                if first_end is not None and time.monotonic() - started > first_end + steady_s:
                    break
                time.sleep(0.2)
    return {
        "edge": short_commit(before) if before else "this tree",
        "objects": objects,
        "first_cycle_s": None if first_end is None else round(first_end, 1),
        **{phase: _summary(seconds) for phase, seconds in phases.items()},
    }


def scenario_during(quick: bool, before: str | None) -> list[dict[str, Any]]:
    """This tree's edge, then ``before``'s when given (10,000 objects; 1,000 when quick)."""
    objects, steady_s = (1_000, 5.0) if quick else (10_000, 30.0)
    rows = [measure_during(objects, steady_s)]
    if before:
        rows.append(measure_during(objects, steady_s, before))
    return rows


def during_md(rows: list[dict[str, Any]]) -> list[str]:
    """The scenario's table."""
    lines = [
        "## The API while the collector polls",
        "",
        "`GET /processed_data` every 0.2 s, sequentially, while the edge polls its fleet every 5 s:"
        " through the first cycle (with the history backfill) and the steady cycles after it.",
        "",
        "| edge | objects | first cycle s | phase | answers | p50 ms | p99 ms | slowest ms |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        for phase in _PHASES:
            s = row[phase]
            lines.append(
                f"| {row['edge']} | {row['objects']:,} | {row['first_cycle_s']} | {phase} | {s['n']} "
                f"| {s.get('p50_ms', '')} | {s.get('p99_ms', '')} | {s.get('max_ms', '')} |"
            )
    return [*lines, ""]


def main() -> None:
    """Measure one edge and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", metavar="REF", help="run this commit's edge instead of the tree's")
    args = parser.parse_args()
    print("\n".join(during_md([measure_during(10_000, 30.0, args.before)])))


if __name__ == "__main__":
    main()
