"""Anomalies on demand: `iotedge inject` asks a real simulator, and a real edge opens an event quickly."""

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import KEYS, edge_args, edge_env, wait_for
from tests.procs import Proc, start_iotedge

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def quiet_sim(logs_dir: Path) -> Iterator[Proc]:
    """A simulator with no scheduled anomalies and one-second readings."""
    with start_iotedge(["sim", "--anomaly-rate", "0", "--interval", "1"], log_dir=logs_dir) as proc:
        yield proc


def test_inject_refuses_bad_orders(quiet_sim: Proc) -> None:
    """Unknown object: the course's 404; a metric the object lacks or a bad kind: a 422 naming it."""
    url = quiet_sim.url + "/_sim/anomalies/inject"
    assert httpx.post(url, json={"object_id": "device_99"}).json() == {"error": "Device not found"}
    wrong = httpx.post(url, json={"object_id": "device_1", "metric": "humidity"})
    assert wrong.status_code == 422 and wrong.json()["detail"] == [
        {
            "parameter": "metric",
            "in": "body",
            "message": "device_1 (temperature_sensor) has no humidity: "
            "it measures temperature, battery_level",
        }
    ]
    battery = httpx.post(url, json={"object_id": "device_1", "kind": "battery_low", "metric": "temperature"})
    assert battery.status_code == 422
    assert battery.json()["detail"][0]["message"] == "battery_low applies to battery_level only"
    kind = httpx.post(url, json={"object_id": "device_1", "kind": "melt"})
    assert kind.status_code == 422 and "kind" in kind.text


def test_injected_spike_opens_an_event(quiet_sim: Proc, logs_dir: Path, tmp_path: Path) -> None:
    """The CLI injects a spike on device_1; the sim reports it and the edge opens an event within seconds."""
    with start_iotedge(edge_args(quiet_sim.url, tmp_path), log_dir=logs_dir, env=edge_env()) as edge:
        wait_for(lambda: httpx.get(edge.url + "/readyz").status_code == 200, 20, "edge ready")
        done = subprocess.run(
            [sys.executable, "-m", "iotedge", "inject", "--sim-url", quiet_sim.url, "--object", "device_1",
             "--duration", "30s"],
            capture_output=True, text=True, timeout=20, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("injected spike on device_1 temperature from ")
        truth = httpx.get(quiet_sim.url + "/_sim/anomalies").json()["anomalies"]
        assert [(a["object_id"], a["kind"]) for a in truth] == [("device_1", "spike")]
        value = httpx.get(quiet_sim.url + "/iot_objects/device_1").json()["metrics"]["temperature"]
        assert not 20 <= value <= 30

        def opened() -> bool:
            events = httpx.get(
                edge.url + "/anomalies",
                params={"state": "open", "object_id": "device_1"},
                headers={"x-api-key": KEYS["client_1"]},
            ).json()["anomalies"]
            return any(event["metric"] == "temperature" for event in events)

        wait_for(opened, 15, "an open temperature event on device_1")
