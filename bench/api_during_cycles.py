"""API latency while the collector polls 10,000 objects: during the first cycle and after it.

An edge (this tree's, or ``--before REF``'s ``src/``) polls a 10,000-object simulator every
5 s; one client sends ``GET /processed_data`` every 0.2 s through the first cycle (with its
backfill) and for 30 s of steady cycles, and prints p50, p99 and the slowest answer of each
phase. Sequential requests: a long answer is the event loop held by the collector. Run:
``.venv/bin/python bench/api_during_cycles.py [--before REF]`` (about two minutes).
"""

import argparse
import tempfile
import time
from pathlib import Path

import httpx

from edgeproc import edge_command, edge_env, key_of, sim_command
from fleet_bench import _fleet_args
from processes import free_port, serve
from versus import export_src

__all__ = ["main"]

_STEADY_S = 30.0
_DEADLINE_S = 300.0


def _summary(name: str, seconds: list[float]) -> str:
    ordered = sorted(seconds)
    if not ordered:
        return f"{name}: no answers"
    p50, p99 = ordered[len(ordered) // 2], ordered[int(len(ordered) * 0.99)]
    slowest = ordered[-1]
    return (
        f"{name}: n {len(ordered)}, p50 {1000 * p50:.1f} ms, p99 {1000 * p99:.1f} ms,"
        f" max {1000 * slowest:.1f} ms"
    )


def main() -> None:
    """Measure one edge and print the two phases."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", metavar="REF", help="run this commit's edge instead of the tree's")
    args = parser.parse_args()
    sim_port, port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="iotedge-probe-") as tmp:
        work = Path(tmp)
        env = edge_env() | ({"PYTHONPATH": str(export_src(args.before, work))} if args.before else {})
        with (
            serve("sim", sim_command(sim_port, *_fleet_args(10_000)), port=sim_port, log_dir=work) as sim,
            serve(
                "edge", edge_command(port, sim.url, work), port=port, log_dir=work, env=env, timeout=60
            ) as edge,
            httpx.Client(timeout=30.0) as client,
        ):
            data = {"x-api-key": key_of("client_1")}
            status = {"x-api-key": key_of("*")}
            phases: dict[str, list[float]] = {"first cycle": [], "steady": []}
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
                if first_end is not None and time.monotonic() - started > first_end + _STEADY_S:
                    break
                time.sleep(0.2)
    print(f"first cycle over after about {first_end or float('nan'):.1f} s")
    for name, seconds in phases.items():
        print(_summary(name, seconds))


if __name__ == "__main__":
    main()
