"""MQTT ingest against HTTP polling: messages/s and readings/s of one edge on this machine.

MQTT: an edge's persistent session is filled with N QoS-1 telemetry messages while the edge
is stopped (a broker of our own, on loopback); the edge is started again and timed from
its reconnection until every message is counted and stored. That is the edge's ingest
path alone (decode, normalise, store batch, rules, acknowledgements), not the publisher's.

HTTP: an edge polls a simulator of ``objects`` objects every second; the poll path's
capacity is objects per mean cycle time (the collector's own histogram).

Run: ``python bench/mqtt_bench.py [--messages 60000] [--objects 1000]`` (or ``--quick``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edgeproc import CLOUD_KEY, cycle_stats, edge_command, edge_env, sim_command
from processes import HOST, free_port, say, serve

__all__ = ["main", "scenario_mqtt"]

_SAMPLE = re.compile(r"^(iotedge_mqtt_messages_received_total|iotedge_readings_ingested_total) (\S+)$", re.M)


def _metrics(url: str) -> dict[str, float]:
    return {name: float(value) for name, value in _SAMPLE.findall(httpx.get(url, timeout=10).text)}


@contextlib.contextmanager
def _broker(directory: Path) -> Iterator[int]:
    port = free_port()
    config = directory / "mosquitto.conf"
    config.write_text(
        f"listener {port} {HOST}\nallow_anonymous true\npersistence false\n"
        "max_queued_messages 0\nmax_inflight_messages 1000\n"
    )
    broker = subprocess.Popen(
        ["mosquitto", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        time.sleep(0.3)
        yield port
    finally:
        broker.terminate()
        broker.wait(10)


def _publish(port: int, prefix: str, messages: int, objects: int) -> float:
    """Publish ``messages`` QoS-1 readings round-robin over ``objects``; returns seconds taken."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect(HOST, port)
    client.loop_start()
    started = time.monotonic()
    base = time.time() - messages // objects - 60
    infos = []
    for i in range(messages):
        obj, step = i % objects, i // objects
        body = {
            "type": "temperature_sensor",
            "metrics": {"temperature": 20.0 + (i % 37) / 10, "battery_level": 90},
            "timestamp": datetime.fromtimestamp(base + step, UTC).isoformat(),
        }
        infos.append(client.publish(f"{prefix}/client_1/obj_{obj}/telemetry", json.dumps(body), qos=1))
    for info in infos:
        info.wait_for_publish(120)
    elapsed = time.monotonic() - started
    client.disconnect()
    client.loop_stop()
    return elapsed


def _mqtt_ingest(messages: int, objects: int, log_dir: Path) -> dict[str, Any]:
    prefix = "bench"
    with _broker(log_dir) as broker_port:
        sim_port, edge_port, metrics_port = free_port(), free_port(), free_port()
        sim_args = sim_command(sim_port, "--clients", "1", "--objects-per-client", "1")
        mqtt_flags = (
            "--mqtt-broker", f"mqtt://{HOST}:{broker_port}", "--mqtt-topic-prefix", prefix,
            "--mqtt-client-id", "bench-edge", "--mqtt-object-rate", "0",
        )  # fmt: skip
        data_dir = log_dir / "edge"
        argv = edge_command(
            edge_port, f"http://{HOST}:{sim_port}", data_dir, *mqtt_flags, metrics_port=metrics_port
        )
        env = edge_env()
        headers = {"x-api-key": CLOUD_KEY}
        with serve("sim", sim_args, port=sim_port, log_dir=log_dir):
            with serve(
                "edge", argv, port=edge_port, log_dir=log_dir, ready_path="/readyz", headers=headers, env=env
            ):
                pass  # the first start creates the session and its subscription
            say(f"mqtt: queueing {messages:,} messages for {objects:,} objects while the edge is down")
            publish_s = _publish(broker_port, prefix, messages, objects)
            metrics_url = f"http://{HOST}:{metrics_port}/metrics"
            with serve("edge", argv, port=edge_port, log_dir=log_dir, env=env):
                # Timed from the first sample that saw messages arrive, over those counted since.
                deadline = time.monotonic() + 300
                first: tuple[float, float] | None = None
                counts: dict[str, float] = {}
                while time.monotonic() < deadline:
                    counts = _metrics(metrics_url)
                    got = counts.get("iotedge_mqtt_messages_received_total", 0.0)
                    if first is None and got > 0:
                        first = (time.monotonic(), got)
                    if got >= messages:
                        break
                    time.sleep(0.02)
                ended = time.monotonic()
                counts = _metrics(metrics_url)
    start_at, start_count = first or (ended, 0.0)
    elapsed = max(1e-6, ended - start_at)
    received = counts.get("iotedge_mqtt_messages_received_total", 0.0)
    stored = counts.get("iotedge_readings_ingested_total", 0.0)
    return {
        "messages": messages,
        "objects": objects,
        "received": int(received),
        "readings_stored": int(stored),
        "seconds": round(elapsed, 3),
        "messages_per_s": round((received - start_count) / elapsed),
        "readings_per_s": round(stored * (received - start_count) / max(1.0, received) / elapsed),
        "publisher_messages_per_s": round(messages / publish_s),
    }


def _http_poll(objects: int, log_dir: Path, cycles: int) -> dict[str, Any]:
    sim_port, edge_port, metrics_port = free_port(), free_port(), free_port()
    per_client = max(1, objects // 10)
    sim_args = sim_command(
        sim_port, "--clients", str(objects // per_client), "--objects-per-client", str(per_client)
    )
    argv = edge_command(edge_port, f"http://{HOST}:{sim_port}", log_dir / "poll", metrics_port=metrics_port)
    argv[argv.index("--poll-interval") + 1] = "1s"
    metrics_url = f"http://{HOST}:{metrics_port}/metrics"
    with (
        serve("sim", sim_args, port=sim_port, log_dir=log_dir),
        serve("edge", argv, port=edge_port, log_dir=log_dir, env=edge_env()),
    ):
        deadline = time.monotonic() + 240
        while cycle_stats(metrics_url)[0] < 1 and time.monotonic() < deadline:  # the backfill cycle
            time.sleep(0.2)
        first_count, first_sum = cycle_stats(metrics_url)
        while cycle_stats(metrics_url)[0] < first_count + cycles and time.monotonic() < deadline:
            time.sleep(0.2)
        count, total = cycle_stats(metrics_url)
    mean = (total - first_sum) / max(1, count - first_count)
    readings_per_object = 2  # every simulated type has its primary metric and a battery level
    return {
        "objects": objects,
        "cycles": count - first_count,
        "mean_cycle_s": round(mean, 3),
        "polls_per_s": round(objects / mean),
        "readings_per_s": round(objects * readings_per_object / mean),
    }


def scenario_mqtt(
    messages: int, objects: int, poll_objects: int, cycles: int, log_dir: Path
) -> dict[str, Any]:
    """Both paths, each on its own edge process."""
    if shutil.which("mosquitto") is None:
        raise SystemExit("mosquitto is not installed (apt-get install mosquitto)")
    mqtt_result = _mqtt_ingest(messages, objects, log_dir)
    say(f"mqtt: {mqtt_result['messages_per_s']:,} messages/s, {mqtt_result['readings_per_s']:,} readings/s")
    http_result = _http_poll(poll_objects, log_dir, cycles)
    say(f"http: {http_result['polls_per_s']:,} polls/s, {http_result['readings_per_s']:,} readings/s")
    return {"mqtt": mqtt_result, "http": http_result}


def render(result: dict[str, Any]) -> str:
    """The two paths side by side, as Markdown."""
    m, h = result["mqtt"], result["http"]
    return "\n".join(
        [
            "| path | load | messages/s | readings/s | how measured |",
            "|---|---|---|---|---|",
            f"| MQTT ingest | {m['messages']:,} queued messages, {m['objects']:,} objects "
            f"| **{m['messages_per_s']:,}** | {m['readings_per_s']:,} "
            f"| drain of the edge's persistent session, {m['seconds']} s |",
            f"| HTTP polling | {h['objects']:,} objects every 1 s | {h['polls_per_s']:,} polls | "
            f"{h['readings_per_s']:,} | objects / mean cycle "
            f"({h['mean_cycle_s']} s over {h['cycles']} cycles) |",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Run both paths once and print the table (and JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=60_000)
    parser.add_argument("--objects", type=int, default=1_000)
    parser.add_argument("--poll-objects", type=int, default=1_000)
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small and fast: a smoke run")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    if args.quick:
        args.messages, args.objects, args.poll_objects, args.cycles = 5_000, 100, 100, 2
    with tempfile.TemporaryDirectory(prefix="iotedge-mqtt-bench-") as tmp:
        result = scenario_mqtt(args.messages, args.objects, args.poll_objects, args.cycles, Path(tmp))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
