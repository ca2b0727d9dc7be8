"""p50 of ``/client_statistics`` and ``/processed_data`` for a client of 10 objects (issue 16).

Starts a simulator of 3 clients x 10 objects, this tree's edge and one edge per git ref
given (its ``src/`` on PYTHONPATH, as ``versus`` does), waits two poll cycles, then probes
each edge sequentially (httpx, keep-alive) in interleaved rounds and prints the medians.

    .venv/bin/python bench/answer_p50.py 102ef57      # main's commit against this tree
"""

import argparse
import contextlib
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from edgeproc import edge_command, edge_env, key_of, sim_command
from processes import Server, free_port, serve
from versus import export_src

PATHS = ("/client_statistics?client_id=client_1", "/processed_data?object_id=device_1")
_ROUNDS = 5
_PER_ROUND = 200
_SETTLE_S = 12.0  # two poll cycles of 5 s, so every object has readings


def main() -> None:
    """Probe the edges and print one line per edge and path."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("refs", nargs="*", help="git refs whose edge runs beside this tree's")
    args = parser.parse_args()
    headers = {"x-api-key": key_of("client_1")}
    log_dir = Path(tempfile.mkdtemp(prefix="answer-p50-"))
    with contextlib.ExitStack() as stack:
        sim_port = free_port()
        sim_argv = sim_command(sim_port, "--clients", "3", "--objects-per-client", "10")
        sim = stack.enter_context(serve("sim", sim_argv, port=sim_port, log_dir=log_dir))
        edges: dict[str, Server] = {}
        for name in [*args.refs, "this tree"]:
            env: dict[str, str] = {}
            if name != "this tree":
                src = export_src(name, Path(stack.enter_context(tempfile.TemporaryDirectory())))
                env = {"PYTHONPATH": str(src)}
            port = free_port()
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            edges[name] = stack.enter_context(
                serve(
                    f"edge-{name.replace(' ', '-')}",
                    edge_command(port, sim.url, workdir),
                    port=port,
                    log_dir=log_dir,
                    ready_path=PATHS[1],
                    headers=headers,
                    env={**edge_env(), **env},
                    timeout=90,
                )
            )
        time.sleep(_SETTLE_S)
        samples: dict[tuple[str, str], list[float]] = {(n, p): [] for n in edges for p in PATHS}
        with httpx.Client(headers=headers, timeout=10) as http:
            for rnd in range(_ROUNDS):
                order = list(edges.items()) if rnd % 2 == 0 else list(edges.items())[::-1]
                for name, server in order:
                    for path in PATHS:
                        first = http.get(server.url + path)
                        first.raise_for_status()
                        if path.startswith("/client_statistics") and len(first.json()["objects"]) != 10:
                            raise SystemExit(f"{name}: client_1 does not have 10 objects yet")
                        for _ in range(_PER_ROUND):
                            started = time.perf_counter()
                            http.get(server.url + path)
                            samples[(name, path)].append(time.perf_counter() - started)
    for (name, path), values in samples.items():
        print(f"{name:10s} {path:40s} p50 {statistics.median(values) * 1e3:.3f} ms (n={len(values)})")


if __name__ == "__main__":
    main()
