"""A bounded load test: mixed authenticated traffic against a polling edge (``load``)."""

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from edgeproc import CLIENT_KEYS, edge_command, edge_env, key_of, sim_command
from measure import Profile
from processes import Server, free_port, say, serve

__all__ = ["load_plan", "scenario_load"]

BENCH = Path(__file__).resolve().parent
_CLIENTS = 10
_OBJECTS_PER_CLIENT = 10
_SAMPLE_EVERY_S = 2.0


def load_plan(edge: Server) -> list[tuple[str, str]]:
    """(path, key) of every request the load walks through, each checked to answer 200.

    Per client, with its own key: each of its objects' ``/processed_data``, and twice each
    ``/client_statistics``, ``/objects`` and ``/anomalies``; plus the cloud key's views of
    every client.
    """
    cloud = key_of("*")
    items = httpx.get(edge.url + "/objects", headers={"x-api-key": cloud}, timeout=30).json()["objects"]
    plan: list[tuple[str, str]] = []
    for client, key in CLIENT_KEYS.items():
        own = sorted(o["id"] for o in items if o["client"] == client)
        plan += [(f"/processed_data?object_id={object_id}", key) for object_id in own]
        plan += 2 * [(f"/client_statistics?client_id={client}", key), ("/objects", key), ("/anomalies", key)]
    plan += [("/client_statistics", cloud), ("/objects", cloud), ("/anomalies?state=open", cloud)]
    with httpx.Client(base_url=edge.url, timeout=30) as http:
        for path, key in plan:
            status = http.get(path, headers={"x-api-key": key}).status_code
            if status != 200:
                raise RuntimeError(f"load plan: {path} answers {status}")
    return plan


def _wrk(url: str, plan_file: Path, seconds: float, connections: int) -> subprocess.Popen[str]:
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s"]
    argv += ["-s", str(BENCH / "load.lua"), url, "--", str(plan_file)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _summary(stdout: str) -> dict[str, Any]:
    line = next((ln for ln in stdout.splitlines() if ln.startswith("{")), None)
    if line is None:
        raise RuntimeError(f"no summary from load.lua:\n{stdout}")
    parsed: dict[str, Any] = json.loads(line)
    return parsed


def scenario_load(profile: Profile, log_dir: Path) -> dict[str, Any]:
    """Minutes of mixed traffic on a polling edge: errors by status, latency, RSS over time."""
    sim_port, port = free_port(), free_port()
    sim_argv = sim_command(
        sim_port, "--clients", str(_CLIENTS), "--objects-per-client", str(_OBJECTS_PER_CLIENT)
    )
    with (
        serve("sim-load", sim_argv, port=sim_port, log_dir=log_dir) as sim,
        tempfile.TemporaryDirectory(prefix="iotedge-load-") as tmp,
    ):
        argv = edge_command(port, sim.url, Path(tmp) / "data")
        headers = {"x-api-key": key_of("client_1")}
        with serve(
            "edge-load",
            argv,
            port=port,
            log_dir=log_dir,
            ready_path="/processed_data?object_id=device_1",
            headers=headers,
            env=edge_env(),
            timeout=60,
        ) as edge:
            plan = load_plan(edge)
            plan_file = Path(tmp) / "plan.tsv"
            plan_file.write_text("".join(f"{path}\t{key}\n" for path, key in plan))
            warmup = min(10.0, max(2.0, profile.load_seconds / 10))
            say(f"load: {len(plan)} distinct requests, warm-up {warmup:.0f} s")
            warm = _wrk(edge.url, plan_file, warmup, profile.load_connections)
            warm.communicate(timeout=warmup + 60)
            say(f"load: {profile.load_seconds:.0f} s, {profile.load_connections} connections")
            started = time.monotonic()
            rss: list[tuple[float, float]] = [(0.0, edge.status_kib("VmRSS") / 1024)]
            cpu_before = edge.cpu_ticks()
            run = _wrk(edge.url, plan_file, profile.load_seconds, profile.load_connections)
            deadline = started + profile.load_seconds + 60
            while run.poll() is None and time.monotonic() < deadline:
                time.sleep(_SAMPLE_EVERY_S)
                rss.append((time.monotonic() - started, edge.status_kib("VmRSS") / 1024))
            stdout, stderr = run.communicate(timeout=max(1.0, deadline - time.monotonic()))
            if run.returncode != 0:
                raise RuntimeError(f"wrk failed ({run.returncode}): {stderr}")
            wall = time.monotonic() - started
            cpu_s = (edge.cpu_ticks() - cpu_before) / os.sysconf("SC_CLK_TCK")
            alive = edge.popen.poll() is None
            peak = edge.status_kib("VmHWM") / 1024
    result = _summary(stdout)
    seconds = result["duration_us"] / 1e6
    middle = min(rss, key=lambda sample: abs(sample[0] - wall / 2))
    return {
        "seconds": round(seconds, 1),
        "connections": profile.load_connections,
        "distinct_requests": len(plan),
        "objects": _CLIENTS * _OBJECTS_PER_CLIENT,
        "requests": result["requests"],
        "rps": result["requests"] / seconds,
        "non2xx": result["non2xx"],
        "by_status": result["by_status"],
        "socket_errors": sum(result[k] for k in ("connect", "read", "write", "timeout")),
        "p50_ms": result["p50_us"] / 1000,
        "p90_ms": result["p90_us"] / 1000,
        "p99_ms": result["p99_us"] / 1000,
        "max_ms": result["max_us"] / 1000,
        "rss_start_mib": rss[0][1],
        "rss_middle_mib": middle[1],
        "rss_end_mib": rss[-1][1],
        "peak_rss_mib": peak,
        "edge_cpu_pct": 100 * cpu_s / wall,
        "edge_alive": alive,
        "rss_series": [(round(t, 1), round(mib, 1)) for t, mib in rss],
    }
