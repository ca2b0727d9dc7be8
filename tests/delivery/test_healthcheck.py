"""The image's health probe: which URL it derives, and its exit code against a real server."""

import subprocess
import sys

import pytest

from iotedge.healthcheck import health_url, main
from tests.procs import Proc, free_port


@pytest.mark.parametrize(
    ("argv", "environ", "expected"),
    [
        (["/opt/venv/bin/python", "/opt/venv/bin/iotedge", "edge"], {}, "http://127.0.0.1:5000"),
        (["iotedge", "sim"], {}, "http://127.0.0.1:8000"),
        (["iotedge", "sim"], {"IOTEDGE_SIM_PORT": "9100", "IOTEDGE_PORT": "1"}, ":9100"),
        (["iotedge", "sim", "--port", "9200"], {"IOTEDGE_SIM_PORT": "9100"}, ":9200"),
        (["iotedge", "edge"], {"IOTEDGE_PORT": "5050"}, "http://127.0.0.1:5050"),
        (["iotedge", "--log-level", "debug", "edge", "--port=6000"], {}, ":6000"),
        (["iotedge", "run"], {}, "http://127.0.0.1:5000"),
        (["iotedge", "edge"], {"IOTEDGE_CERTFILE": "/certs/edge.pem"}, "https://127.0.0.1:5000"),
        ([], {}, "http://127.0.0.1:5000"),
    ],
)
def test_url_follows_role_flags_and_environment(
    argv: list[str], environ: dict[str, str], expected: str
) -> None:
    """The role comes from process 1's command; --port beats IOTEDGE_* which beats the default."""
    url = health_url(argv, environ)
    assert expected in url
    assert url.endswith("/healthz")


def test_healthy_server_exits_zero(sim: Proc) -> None:
    """Against a live simulator the probe succeeds, in-process and as the image runs it."""
    assert main([sim.url + "/healthz"]) == 0
    result = subprocess.run(
        [sys.executable, "-m", "iotedge.healthcheck", sim.url + "/healthz"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_failing_server_exits_one(sim: Proc, capsys: pytest.CaptureFixture[str]) -> None:
    """A 404 and a closed port both make the probe fail and say why."""
    assert main([sim.url + "/no-such-path"]) == 1
    assert "HTTP 404" in capsys.readouterr().err
    assert main([f"http://127.0.0.1:{free_port()}/healthz"]) == 1
    assert "unhealthy" in capsys.readouterr().err
