"""A port already in use stops `iotedge sim` and `iotedge edge` with one line naming the flag to change."""

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port something else listens on, as when `make run` is still running."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def _iotedge(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOTEDGE_")}
    return subprocess.run(
        [sys.executable, "-m", "iotedge", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def _refused(result: subprocess.CompletedProcess[str], port: int, flag: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert errors == [
        f"Error: port {port} on 127.0.0.1 is not free (Address already in use); is another iotedge running? "
        f"Stop it or pick another port with {flag}."
    ], output


def test_sim_on_a_taken_port(taken_port: int) -> None:
    _refused(_iotedge("sim", "--port", str(taken_port)), taken_port, "--port")


@pytest.mark.parametrize("flag", ["--port", "--metrics-port"])
def test_edge_on_a_taken_port(taken_port: int, flag: str, tmp_path: Path) -> None:
    ports = {"--port": "0", "--metrics-port": "0", flag: str(taken_port)}
    args = [part for pair in ports.items() for part in pair]
    result = _iotedge("edge", "--data-dir", str(tmp_path), "--upstream", "http://127.0.0.1:9", *args)
    _refused(result, taken_port, flag)
