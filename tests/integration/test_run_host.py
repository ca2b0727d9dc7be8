"""`iotedge run --host`: the demo's API and metrics listen on the given address, both of them."""

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.procs import free_port

pytestmark = pytest.mark.integration

HOST = "127.0.0.2"  # a loopback address other than the default, to tell the two apart


def test_run_binds_api_and_metrics_to_host(tmp_path: Path, logs_dir: Path) -> None:
    """With --host 127.0.0.2 the edge API and its metrics answer there, and not on 127.0.0.1."""
    sim_port, port, metrics_port = free_port(), free_port(), free_port()
    command = [sys.executable, "-m", "iotedge", "run", "--host", HOST, "--sim-port", str(sim_port)]
    command += ["--port", str(port), "--metrics-port", str(metrics_port), "--data-dir", str(tmp_path)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOTEDGE_")}
    log_path = logs_dir / f"run-host-{port}.log"
    with log_path.open("wb") as log:
        popen = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 30
        health = None
        while time.monotonic() < deadline and popen.poll() is None:
            with contextlib.suppress(httpx.HTTPError):
                health = httpx.get(f"http://{HOST}:{port}/healthz", timeout=1)
                break
            time.sleep(0.1)
        assert health is not None and health.status_code == 200, log_path.read_text()
        assert httpx.get(f"http://{HOST}:{metrics_port}/metrics", timeout=10).status_code == 200
        for unbound in (port, metrics_port):
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"http://127.0.0.1:{unbound}/", timeout=2)
        assert f"http://{HOST}:{port}" in log_path.read_text()  # the banner shows where to go
    finally:
        popen.terminate()
        try:
            popen.wait(15)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(10)
