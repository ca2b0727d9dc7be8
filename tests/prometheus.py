"""A real Prometheus for tests: scrapes given targets on loopback, loads the shipped rules."""

import contextlib
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import require
from tests.procs import free_port, loopback_http

__all__ = ["PROMETHEUS_DIR", "Prometheus", "start_prometheus"]

PROMETHEUS_DIR = Path(__file__).resolve().parents[1] / "deploy" / "prometheus"


@dataclass
class Prometheus:
    """A running Prometheus: its base URL, process and log."""

    url: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        """What Prometheus printed so far."""
        return self.log_path.read_text(errors="replace")

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path> and return its ``data`` (fails on an API error)."""
        body = loopback_http().get(f"{self.url}/api/v1/{path}", params=params, timeout=10).json()
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector ``expr`` evaluates to now."""
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        return list(data["result"])

    def wait_for(
        self,
        expr: str,
        until: Callable[[list[dict[str, Any]]], bool] = bool,
        timeout: float = 30.0,
    ) -> list[dict[str, Any]]:
        """Poll ``expr`` until ``until(result)`` holds (bounded by ``timeout``)."""
        deadline = time.monotonic() + timeout
        result: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            result = self.query(expr)
            if until(result):
                return result
            time.sleep(0.25)
        raise AssertionError(f"{expr} never satisfied the check; last {result}\n{self.log()}")


@contextlib.contextmanager
def start_prometheus(
    targets: list[str], *, workdir: Path, interval: str = "1s", timeout: float = 30.0
) -> Iterator[Prometheus]:
    """Run Prometheus scraping ``targets`` (job iotedge-edge) with the shipped alert rules.

    Scrapes and rule evaluations run every ``interval`` so tests see data within seconds.
    Skips locally, fails in CI, when the ``prometheus`` binary is missing.
    """
    require(shutil.which("prometheus") is not None, "prometheus missing (Debian package)")
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copy(PROMETHEUS_DIR / "alerts.yml", workdir / "alerts.yml")
    quoted = ", ".join(f'"{target}"' for target in targets)
    (workdir / "prometheus.yml").write_text(
        f"global:\n  scrape_interval: {interval}\n  evaluation_interval: {interval}\n"
        "rule_files:\n  - alerts.yml\n"
        "scrape_configs:\n  - job_name: iotedge-edge\n"
        f"    scrape_timeout: {interval}\n    static_configs:\n      - targets: [{quoted}]\n"
    )
    port = free_port()
    log_path = workdir / "prometheus.log"
    command = [
        "prometheus",
        f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with log_path.open("wb") as log_file:
        popen = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
    prometheus = Prometheus(url=f"http://127.0.0.1:{port}", popen=popen, log_path=log_path)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if popen.poll() is not None:
                raise RuntimeError(f"prometheus exited with {popen.returncode}:\n{prometheus.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{prometheus.url}/-/ready", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"prometheus not ready after {timeout}s:\n{prometheus.log()}")
        yield prometheus
    finally:
        popen.terminate()
        try:
            popen.wait(10)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(10)
