"""Scaling out on PostgreSQL (issue 15): API replicas and sharded collectors (``--only scale``).

- api: ``GET /processed_data`` req/s of one and of two ``--role api`` processes reading one
  PostgreSQL database, against a SQLite edge (``--role all``), in the same run. Both stores
  hold the same readings: a collector of each polls the same simulator (3 clients of 10
  objects) once, with its 60-point backfill, and polls again only after the measurement (a
  one-hour interval). The edge has no shared listening socket, so two API processes get two
  ports and two wrk processes at once, each with half of the connections; their req/s add
  up. Configurations alternate round by round; the table shows medians of the rounds.
- fleet: a simulated fleet (100,000 objects by default: 10,000 clients of 10) polled every
  30 s by N ``--role collector`` processes (4 by default) writing to one PostgreSQL
  database. The simulator's catalogue is stored first through the store API, so the
  collectors know every object and skip the first-sight backfill (60 history points per
  object): the run measures polling. With shard leases the first collector up takes every
  shard until its next cycle, so only cycles that start once every collector holds shards
  are measured: each collector's cycle time against the interval, from its
  ``iotedge_collector_cycle_duration_seconds`` metric, over a bounded number of cycles.
  Then (unless ``--scale-no-baseline``) one collector alone on the same database, as the
  baseline. When ``iotedge edge`` has no ``--shards``, each collector is given a fixed share
  of the clients with ``--clients`` instead.

PostgreSQL is the server at 127.0.0.1:5432 (``IOTEDGE_BENCH_PG`` for another admin URL);
each part works in a database of its own and drops it. Every process is stopped at the end.
"""

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql

from edgeproc import cycle_stats, edge_command, edge_env, key_of, sim_command
from iotedge.edge.normalise import CatalogueEntry
from iotedge.edge.store.postgres import open_pg_store
from measure import FULL, QUICK, Profile, percentile, probe, run_wrk
from processes import Server, free_port, say, serve, settle

__all__ = ["FULL_SCALE", "QUICK_SCALE", "ScaleProfile", "scale_md", "scenario_scale", "shard_flag"]

ADMIN_URL = os.environ.get("IOTEDGE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
_PATH = "/processed_data?object_id=device_1"
_TICK = os.sysconf("SC_CLK_TCK")
_SCRAPE_EVERY_S = 2.0


@dataclass(frozen=True, kw_only=True)
class ScaleProfile:
    """How big and how long the scale scenario runs."""

    # The API part's rounds per configuration, wrk seconds, probe requests, wrk connections
    # (in all, split evenly between the API processes) and settle time; nothing else of it.
    measure: Profile
    clients: int  # the fleet: clients of the simulator ...
    objects_per_client: int  # ... times objects per client
    interval_s: float  # the collectors' poll interval
    collectors: int
    steady_cycles: int  # cycles measured after each collector's first
    warmup_cycles: int  # cycles of each collector not measured (leases settle, caches fill)
    fleet_max_seconds: float  # bound on the sharded run (warm-up included)
    baseline_max_seconds: float  # bound on the single collector's run
    shards: int  # --shards given to each collector, when the edge has the flag

    @property
    def objects(self) -> int:
        """Objects in the simulated fleet."""
        return self.clients * self.objects_per_client


FULL_SCALE = ScaleProfile(
    measure=dataclasses.replace(FULL, wrk_seconds=5),
    clients=10_000,
    objects_per_client=10,
    interval_s=30.0,
    collectors=4,
    steady_cycles=3,
    warmup_cycles=2,
    fleet_max_seconds=1200,
    baseline_max_seconds=400,
    shards=64,
)
QUICK_SCALE = ScaleProfile(
    measure=QUICK,
    clients=20,
    objects_per_client=5,
    interval_s=2.0,
    collectors=2,
    steady_cycles=1,
    warmup_cycles=1,
    fleet_max_seconds=90,
    baseline_max_seconds=40,
    shards=8,
)


# -- helpers ---------------------------------------------------------------------------


@contextlib.contextmanager
def _database() -> Iterator[str]:
    """A scratch database on the server: its URL; dropped (its sessions first) at the end."""
    name = f"iotedge_scale_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def shard_flag() -> bool:
    """Whether this tree's ``iotedge edge`` takes ``--shards`` (collectors with shard leases)."""
    done = subprocess.run(
        [sys.executable, "-m", "iotedge", "edge", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return re.search(r"^\s+--shards\b", done.stdout, re.MULTILINE) is not None


def _role_command(
    role: str, port: int, upstream: str, data_dir: Path, store: str, *, metrics_port: int = 0, name: str
) -> list[str]:
    return edge_command(
        port,
        upstream,
        data_dir,
        "--role",
        role,
        "--store",
        store,
        "--edge-id",
        name,
        metrics_port=metrics_port,
    )


def _scrape(metrics_url: str) -> dict[str, float]:
    """Cycles, their seconds, device calls answered and failed: a collector's metrics so far."""
    out = {"cycles": 0.0, "cycle_s": 0.0, "calls_ok": 0.0, "calls_failed": 0.0, "shards": 0.0}
    for line in httpx.get(metrics_url, timeout=30.0).text.splitlines():
        if not line.startswith("iotedge_"):
            continue
        sample, _, value = line.rpartition(" ")  # label values hold braces ("/iot_data/{id}")
        name = sample.split("{", 1)[0]
        if name == "iotedge_collector_cycle_duration_seconds_count":
            out["cycles"] = float(value)
        elif name == "iotedge_collector_cycle_duration_seconds_sum":
            out["cycle_s"] = float(value)
        elif name == "iotedge_collector_shards_owned":
            out["shards"] = float(value)
        elif name == "iotedge_upstream_requests_total":
            out["calls_ok" if 'outcome="ok"' in sample else "calls_failed"] += float(value)
    return out


def _wait_cycles(metrics_url: str, cycles: int, timeout: float, server: Server) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.popen.poll() is not None:
            raise RuntimeError(f"{server.name} exited: {server.log_path.read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if cycle_stats(metrics_url)[0] >= cycles:
                return
        time.sleep(0.5)
    raise RuntimeError(f"{server.name}: no {cycles} poll cycle(s) after {timeout} s")


def _busy_share() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine so far, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


# -- part 1: API replicas --------------------------------------------------------------


def _wrk_all(urls: Sequence[str], profile: ScaleProfile) -> tuple[float, int, int]:
    """wrk on every URL at once, the connections split evenly: (req/s summed, requests, errors)."""
    per = max(1, profile.measure.connections // len(urls))
    headers = {"x-api-key": key_of("client_1")}
    with concurrent.futures.ThreadPoolExecutor(len(urls)) as pool:
        runs = list(
            pool.map(
                lambda url: run_wrk(
                    url, seconds=profile.measure.wrk_seconds, connections=per, headers=headers
                ),
                urls,
            )
        )
    return sum(r.rps for r in runs), sum(r.requests for r in runs), sum(r.errors for r in runs)


def _api(profile: ScaleProfile, log_dir: Path, tmp: Path, pg_url: str) -> dict[str, Any]:
    sim_port = free_port()
    sim_argv = sim_command(sim_port, "--clients", "3", "--objects-per-client", "10")
    headers = {"x-api-key": key_of("client_1")}
    with contextlib.ExitStack() as stack:
        sim = stack.enter_context(serve("scale-sim", sim_argv, port=sim_port, log_dir=log_dir))
        # The same readings in both stores: one cycle (backfill and a poll) of the same simulator.
        port, metrics = free_port(), free_port()
        argv = edge_command(port, sim.url, tmp / "sqlite", "--poll-interval", "3600s", metrics_port=metrics)
        lite = stack.enter_context(
            serve("scale-sqlite", argv, port=port, log_dir=log_dir, env=edge_env(), timeout=60)
        )
        _wait_cycles(f"http://127.0.0.1:{metrics}/metrics", 1, 120, lite)
        port, metrics = free_port(), free_port()
        argv = _role_command(
            "collector", port, sim.url, tmp / "collector", pg_url, metrics_port=metrics, name="c0"
        )
        argv += ["--poll-interval", "3600s"]
        with serve(
            "scale-pg-collector", argv, port=port, log_dir=log_dir, env=edge_env(), timeout=60
        ) as coll:
            _wait_cycles(f"http://127.0.0.1:{metrics}/metrics", 1, 120, coll)
        apis: list[Server] = []
        for n in (1, 2):
            port = free_port()
            argv = _role_command("api", port, sim.url, tmp / f"api{n}", pg_url, name=f"api{n}")
            apis.append(
                stack.enter_context(
                    serve(
                        f"scale-api{n}",
                        argv,
                        port=port,
                        log_dir=log_dir,
                        ready_path=_PATH,
                        headers=headers,
                        env=edge_env(),
                        timeout=60,
                    )
                )
            )
        bodies = {httpx.get(s.url + _PATH, headers=headers, timeout=30).json().get("count") for s in apis}
        configs: list[tuple[str, list[Server]]] = [
            ("SQLite, 1 process (all)", [lite]),
            ("PostgreSQL, 1 API process", apis[:1]),
            ("PostgreSQL, 2 API processes", apis),
        ]
        everyone = [sim, lite, *apis]
        rps: dict[str, list[float]] = {name: [] for name, _ in configs}
        errors: dict[str, int] = dict.fromkeys(rps, 0)
        requests: dict[str, int] = dict.fromkeys(rps, 0)
        cpu_s: dict[str, float] = dict.fromkeys(rps, 0.0)  # of the edge processes, during wrk
        latencies: dict[str, list[float]] = {name: [] for name in rps}
        busy: dict[str, list[float]] = {name: [] for name in rps}
        for rnd in range(profile.measure.rounds):
            for name, servers in configs if rnd % 2 == 0 else configs[::-1]:
                say(f"scale api: round {rnd + 1}/{profile.measure.rounds} {name}")
                settle(everyone, profile.measure.settle_seconds)
                samples, failed = probe(
                    servers[0].url + _PATH,
                    requests=profile.measure.probe_requests,
                    seconds=3.0,
                    headers=headers,
                )
                latencies[name] += samples
                errors[name] += failed
                settle(everyone, profile.measure.settle_seconds)
                ticks, machine = sum(s.cpu_ticks() for s in servers), _busy_share()
                got, done, failed = _wrk_all([s.url + _PATH for s in servers], profile)
                machine_after = _busy_share()
                cpu_s[name] += (sum(s.cpu_ticks() for s in servers) - ticks) / _TICK
                busy[name].append(
                    100 * (machine_after[0] - machine[0]) / max(1, machine_after[1] - machine[1])
                )
                rps[name].append(got)
                requests[name] += done
                errors[name] += failed
    base = statistics.median(rps[configs[0][0]])
    one = statistics.median(rps[configs[1][0]])
    rows = [
        {
            "config": name,
            "processes": len(servers),
            "rps": statistics.median(rps[name]),
            "rps_rounds": rps[name],
            "requests": requests[name],
            "errors": errors[name],
            "x_sqlite": statistics.median(rps[name]) / base,
            "x_one_api": statistics.median(rps[name]) / one,
            "p50_ms": percentile(latencies[name], 0.5),
            "p99_ms": percentile(latencies[name], 0.99),
            "edge_cpu_us_per_request": 1e6 * cpu_s[name] / max(1, requests[name]),
            "machine_busy_pct": statistics.median(busy[name]),
        }
        for name, servers in configs
    ]
    return {"rows": rows, "connections": profile.measure.connections, "same_answer": len(bodies) == 1}


# -- part 2: sharded collectors --------------------------------------------------------


@dataclass
class _Watch:
    """One collector's cycles, as scraped."""

    server: Server
    metrics_url: str
    warmup: int
    first: dict[str, float] | None = None  # the scrape that saw the warm-up cycles done
    last: dict[str, float] | None = None
    cycles: list[float] | None = None  # durations of steady cycles seen one at a time

    shards: float = 0.0  # held at the last scrape
    count: int = 0  # cycles done at the last scrape

    def restart_after_current(self) -> None:
        """Measure only cycles that start from now on: the one in progress is warm-up too."""
        self.warmup = max(self.warmup, self.count + 1)
        self.first = self.last = self.cycles = None

    def scrape(self) -> None:
        """Read the metrics; note the durations of cycles that ended one since the last scrape."""
        now = _scrape(self.metrics_url) | {"t": time.monotonic(), "ticks": float(self.server.cpu_ticks())}
        self.shards, self.count = now["shards"], int(now["cycles"])
        if self.first is None:
            if now["cycles"] >= self.warmup:
                self.first, self.cycles = now, []
        elif self.last is not None and self.cycles is not None and now["cycles"] == self.last["cycles"] + 1:
            self.cycles.append(now["cycle_s"] - self.last["cycle_s"])
        if self.first is not None:
            self.last = now

    def steady(self) -> int:
        """Cycles finished since the first one."""
        return (
            0 if self.first is None or self.last is None else int(self.last["cycles"] - self.first["cycles"])
        )

    def summary(self, interval_s: float) -> dict[str, Any]:
        if self.first is None or self.last is None:
            return {"name": self.server.name, "cycles": 0}
        first, last = self.first, self.last
        steady = self.steady()
        wall = last["t"] - first["t"]
        mean = (last["cycle_s"] - first["cycle_s"]) / steady if steady else float("nan")
        return {
            "name": self.server.name,
            "warmup_cycle_s": first["cycle_s"] / first["cycles"],
            "cycles": steady,
            "mean_cycle_s": mean,
            "max_cycle_s": max(self.cycles) if self.cycles else mean,
            "cycle_share": mean / interval_s,
            "calls_per_cycle": (last["calls_ok"] - first["calls_ok"]) / steady if steady else 0.0,
            "failed_calls": last["calls_failed"] - first["calls_failed"],
            "cpu_pct": 100 * (last["ticks"] - first["ticks"]) / _TICK / wall if wall > 0 else 0.0,
            "peak_rss_mib": self.server.status_kib("VmHWM") / 1024,
        }


def _collectors(
    profile: ScaleProfile,
    log_dir: Path,
    tmp: Path,
    sim: Server,
    pg_url: str,
    count: int,
    *,
    sharded: bool,
    max_seconds: float,
    label: str,
) -> dict[str, Any]:
    """Run ``count`` collectors until each has ``steady_cycles`` after its first, or the bound."""
    clients = [f"client_{n}" for n in range(1, profile.clients + 1)]
    watches: list[_Watch] = []
    with contextlib.ExitStack() as stack:
        for n in range(count):
            port, metrics = free_port(), free_port()
            name = f"{label}-c{n + 1}"
            argv = _role_command(
                "collector", port, sim.url, tmp / name, pg_url, metrics_port=metrics, name=name
            )
            argv += ["--poll-interval", f"{profile.interval_s:g}s"]
            if count > 1 and sharded:
                argv += ["--shards", str(profile.shards)]
            elif count > 1:
                argv += ["--clients", ",".join(clients[n::count])]
            server = stack.enter_context(
                serve(name, argv, port=port, log_dir=log_dir, env=edge_env(), timeout=120)
            )
            watches.append(_Watch(server, f"http://127.0.0.1:{metrics}/metrics", profile.warmup_cycles))
        started = time.monotonic()
        # With shard leases the first collector up takes every shard until its next cycle:
        # measure only cycles that start once every collector holds some.
        leases_settled = not (count > 1 and sharded)
        machine_before: tuple[int, int] | None = None
        sim_before = 0
        steady_from = 0.0
        while time.monotonic() < started + max_seconds:
            for watch in watches:
                if watch.server.popen.poll() is not None:
                    raise RuntimeError(
                        f"{watch.server.name} exited: {watch.server.log_path.read_text()[-2000:]}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    watch.scrape()
            if not leases_settled and all(w.shards > 0 for w in watches):
                leases_settled = True
                say(f"scale fleet: {label}: every collector holds shards")
                for watch in watches:
                    watch.restart_after_current()
            if leases_settled and machine_before is None and all(w.first is not None for w in watches):
                machine_before, sim_before, steady_from = _busy_share(), sim.cpu_ticks(), time.monotonic()
                firsts = ", ".join(f"{w.first['cycle_s']:.0f} s" for w in watches if w.first is not None)
                say(f"scale fleet: {label}: warm-up cycles done ({firsts})")
            if leases_settled and all(w.steady() >= profile.steady_cycles for w in watches):
                break
            time.sleep(_SCRAPE_EVERY_S)
        wall = time.monotonic() - steady_from if machine_before is not None else 0.0
        machine_after, sim_after = _busy_share(), sim.cpu_ticks()
        rows = [w.summary(profile.interval_s) for w in watches]
    busy = (
        100 * (machine_after[0] - machine_before[0]) / max(1, machine_after[1] - machine_before[1])
        if machine_before is not None
        else float("nan")
    )
    return {
        "collectors": count,
        "mode": "shard leases" if (count > 1 and sharded) else ("--clients split" if count > 1 else "alone"),
        "rows": rows,
        "complete": all(r["cycles"] >= profile.steady_cycles for r in rows),
        "machine_busy_pct": busy,
        "sim_cpu_pct": 100 * (sim_after - sim_before) / _TICK / wall if wall > 0 else float("nan"),
        "elapsed_s": time.monotonic() - started,
    }


async def _seed_catalogue(entries: list[CatalogueEntry], pg_url: str) -> None:
    """Store the simulator's catalogue through the store API, as a past collector would have.

    The collectors then know every object at start and skip the first-sight backfill (60
    history points per object: 12 million readings at 100,000 objects), so the run measures
    polling. The backfill is a one-time cost, measured by the ``rss`` scenario on SQLite.
    """
    store = await open_pg_store(pg_url, max_size=1)
    try:
        await store.upsert_objects(entries, time.time())
    finally:
        await store.close()


def _fleet(profile: ScaleProfile, log_dir: Path, tmp: Path, pg_url: str, *, sharded: bool) -> dict[str, Any]:
    sim_port = free_port()
    sim_argv = sim_command(
        sim_port, "--clients", str(profile.clients), "--objects-per-client", str(profile.objects_per_client)
    )
    with serve("scale-fleet-sim", sim_argv, port=sim_port, log_dir=log_dir, timeout=300) as sim:
        started = time.monotonic()
        listed = httpx.get(sim.url + "/iot_objects", timeout=120.0).json()
        entries = [CatalogueEntry(o["id"], o["client"], o["type"]) for o in listed]
        asyncio.run(_seed_catalogue(entries, pg_url))
        seed_s = time.monotonic() - started
        say(
            f"scale fleet: {profile.objects:,} objects, {profile.collectors} collectors"
            f" every {profile.interval_s:g} s"
        )
        many = _collectors(
            profile,
            log_dir,
            tmp,
            sim,
            pg_url,
            profile.collectors,
            sharded=sharded,
            max_seconds=profile.fleet_max_seconds,
            label="sharded",
        )
        if profile.baseline_max_seconds <= 0:
            one = None
        else:
            say("scale fleet: 1 collector alone on the same database (baseline)")
            one = _collectors(
                profile,
                log_dir,
                tmp,
                sim,
                pg_url,
                1,
                sharded=sharded,
                max_seconds=profile.baseline_max_seconds,
                label="alone",
            )
        sim_peak = sim.status_kib("VmHWM") / 1024
    return {
        "objects": profile.objects,
        "interval_s": profile.interval_s,
        "steady_cycles": profile.steady_cycles,
        "warmup_cycles": profile.warmup_cycles,
        "seed_s": seed_s,
        "sharded": many,
        "alone": one,
        "sim_peak_rss_mib": sim_peak,
    }


def scenario_scale(
    profile: ScaleProfile, log_dir: Path, *, parts: Sequence[str] = ("api", "fleet")
) -> dict[str, Any]:
    """Both parts, each in a database of its own (minutes; the quick profile well under two)."""
    out: dict[str, Any] = {"profile": dataclasses.asdict(profile)}
    # A SIGTERM unwinds like Ctrl-C: every process is stopped and every database dropped.
    signal.signal(signal.SIGTERM, _exit_on_term)
    sharded = shard_flag()
    out["shard_leases"] = sharded
    if "api" in parts:
        with _database() as url, tempfile.TemporaryDirectory(prefix="iotedge-scale-") as tmp:
            out["api"] = _api(profile, log_dir, Path(tmp), url)
    if "fleet" in parts:
        with _database() as url, tempfile.TemporaryDirectory(prefix="iotedge-scale-") as tmp:
            out["fleet"] = _fleet(profile, log_dir, Path(tmp), url, sharded=sharded)
    return out


def _exit_on_term(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _f(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}" if value == value else "-"  # NaN is itself unequal


def scale_md(data: dict[str, Any]) -> list[str]:
    """The results as Markdown tables."""
    out: list[str] = []
    api = data.get("api")
    if api:
        out += [
            "## Scaling out on PostgreSQL: API processes",
            "",
            f"`GET {_PATH}`, {api['connections']} wrk connections in all (split between the processes),"
            " median of the rounds.",
            "",
            "| configuration | processes | req/s | x SQLite | x 1 API process | p50 ms | p99 ms"
            " | edge CPU µs per request | machine busy % | errors |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in api["rows"]:
            out.append(
                f"| {r['config']} | {r['processes']} | {_f(r['rps'], 0)} | {r['x_sqlite']:.2f}"
                f" | {r['x_one_api']:.2f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f}"
                f" | {r['edge_cpu_us_per_request']:.0f} | {r['machine_busy_pct']:.0f} | {r['errors']} |"
            )
        out += [
            "",
            "p50/p99: a sequential probe of the first process; edge CPU: the API processes' CPU"
            " during wrk per request answered (PostgreSQL's own CPU is not in it).",
        ]
        out += ["", f"Both API processes gave the same answer: {api['same_answer']}.", ""]
    fleet = data.get("fleet")
    if fleet:
        out += [
            "## Scaling out on PostgreSQL: collectors",
            "",
            f"{fleet['objects']:,} simulated objects every {fleet['interval_s']:g} s, one PostgreSQL;"
            f" catalogue seeded (no backfill); cycles after each collector's {fleet['warmup_cycles']}"
            f" warm-up cycle(s), up to {fleet['steady_cycles']}.",
            "",
            "| run | collector | warm-up cycle s (mean) | steady cycles | mean cycle s | max cycle s"
            " | cycle / interval | device calls per cycle | failed calls | CPU % | peak RSS MiB |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        runs = [fleet[key] for key in ("sharded", "alone") if fleet.get(key)]
        for run in runs:
            for r in run["rows"]:
                if not r["cycles"]:
                    out.append(f"| {run['mode']} | {r['name']} | - | 0 | - | - | - | - | - | - | - |")
                    continue
                out.append(
                    f"| {run['mode']} | {r['name']} | {_f(r['warmup_cycle_s'])} | {r['cycles']}"
                    f" | {_f(r['mean_cycle_s'])} | {_f(r['max_cycle_s'])} | {r['cycle_share']:.2f}"
                    f" | {_f(r['calls_per_cycle'], 0)} | {r['failed_calls']:.0f} | {_f(r['cpu_pct'], 0)}"
                    f" | {_f(r['peak_rss_mib'], 0)} |"
                )
        out.append("")
        for run in runs:
            out.append(
                f"- {run['mode']}: machine busy {_f(run['machine_busy_pct'], 0)}% during the steady cycles,"
                f" simulator {_f(run['sim_cpu_pct'], 0)}% CPU; complete: {run['complete']};"
                f" {run['elapsed_s']:.0f} s."
            )
        out += [f"- simulator peak RSS {fleet['sim_peak_rss_mib']:.0f} MiB.", ""]
    return out
