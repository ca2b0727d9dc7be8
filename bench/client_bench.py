"""CPU per request of httpx and aiohttp against a real ``iotedge sim`` on loopback.

Measures what the collector pays per device request: ``N`` GETs of ``/iot_data/{id}``
spread over a 10,000-object fleet, ``--concurrency`` in flight, one pooled client each.
The two clients run alternately, round after round, in this one process; the table
gives the median over rounds of client-process CPU (user + system) per request and of
wall time. Run: ``.venv/bin/python bench/client_bench.py`` (about a minute).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx

from edgeproc import sim_command
from processes import free_port, say, serve

__all__ = ["main"]

Fetch = Callable[[int], Awaitable[None]]


async def _drive(fetch: Fetch, requests: int, concurrency: int, objects: int) -> tuple[float, float]:
    """(CPU seconds, wall seconds) for ``requests`` fetches, ``concurrency`` at a time."""
    queue = iter(range(requests))

    async def worker() -> None:
        for n in queue:
            await fetch(n % objects + 1)

    cpu, wall = time.process_time(), time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())
    return time.process_time() - cpu, time.perf_counter() - wall


async def _httpx_round(url: str, requests: int, concurrency: int, objects: int) -> tuple[float, float]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=10.0, limits=limits) as client:

        async def fetch(n: int) -> None:
            response = await client.get(f"{url}/iot_data/device_{n}")
            response.raise_for_status()
            response.json()

        return await _drive(fetch, requests, concurrency, objects)


async def _aiohttp_round(url: str, requests: int, concurrency: int, objects: int) -> tuple[float, float]:
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=10.0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def fetch(n: int) -> None:
            async with session.get(f"{url}/iot_data/device_{n}") as response:
                response.raise_for_status()
                await response.json()

        return await _drive(fetch, requests, concurrency, objects)


ROUNDS = {"httpx": _httpx_round, "aiohttp": _aiohttp_round}


def main(argv: list[str] | None = None) -> int:
    """Run the rounds and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32, help="in flight (the edge's default)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    port = free_port()
    argv_sim = sim_command(port, "--clients", "1000", "--objects-per-client", "10")
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in ROUNDS}
    with tempfile.TemporaryDirectory() as tmp, serve("sim", argv_sim, port=port, log_dir=Path(tmp)) as sim:
        for rnd in range(args.rounds):
            names = list(ROUNDS) if rnd % 2 == 0 else list(ROUNDS)[::-1]
            for name in names:
                say(f"client: round {rnd + 1}/{args.rounds} {name}")
                samples[name].append(
                    asyncio.run(ROUNDS[name](sim.url, args.requests, args.concurrency, 10_000))
                )
    print(f"| client | CPU µs/request | wall req/s | ({args.requests} requests x {args.rounds} rounds) |")
    print("| --- | ---: | ---: | --- |")
    cpu = {
        name: statistics.median(c for c, _ in runs) / args.requests * 1e6 for name, runs in samples.items()
    }
    for name, runs in samples.items():
        rps = statistics.median(args.requests / w for _, w in runs)
        print(f"| {name} | {cpu[name]:.0f} | {rps:.0f} | |")
    print(f"\nhttpx / aiohttp CPU per request: {cpu['httpx'] / cpu['aiohttp']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
