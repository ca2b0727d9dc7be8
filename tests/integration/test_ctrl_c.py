"""Ctrl-C, the documented way to stop, is a clean stop: exit 0, no "Aborted!"."""

import signal
from pathlib import Path

import httpx
import pytest

from tests.conftest import edge_args, edge_env, wait_for
from tests.procs import start_iotedge

pytestmark = pytest.mark.integration


def test_ctrl_c_stops_sim_and_edge_cleanly(logs_dir: Path, tmp_path: Path) -> None:
    with start_iotedge(["sim"], log_dir=logs_dir) as sim:
        with start_iotedge(edge_args(sim.url, tmp_path), log_dir=logs_dir, env=edge_env()) as edge:
            wait_for(lambda: httpx.get(edge.url + "/readyz").status_code == 200, 20, "edge ready")
            assert edge.stop(signal.SIGINT) == 0, edge.log()
        assert sim.stop(signal.SIGINT) == 0, sim.log()
    for proc in (sim, edge):
        assert "Aborted!" not in proc.log() and "Traceback" not in proc.log(), proc.log()
