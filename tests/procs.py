"""Start real iotedge processes on loopback for tests, and stop them cleanly."""

import contextlib
import functools
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

__all__ = ["Proc", "free_port", "loopback_http", "start_iotedge"]


@functools.cache
def loopback_http() -> httpx.Client:
    """One keep-alive client for plain-HTTP calls to our processes.

    ``httpx.get`` builds a client, and so an SSL context, per call: about 30 ms each, which
    dominated request-heavy tests.
    """
    return httpx.Client(timeout=10)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Proc:
    """A running iotedge process: its base URL, its process and where its log goes."""

    url: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    args: list[str] = field(default_factory=list)

    def log(self) -> str:
        """Everything the process printed so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Send ``sig`` and wait for the exit code (SIGKILL after ``timeout``)."""
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)
        return self.popen.returncode

    def kill(self) -> None:
        """Kill -9, as a crash would."""
        self.stop(signal.SIGKILL)


def _wait_ready(proc: Proc, health_path: str, timeout: float, verify: ssl.SSLContext | bool) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.popen.returncode}:\n{proc.log()}")
        with contextlib.suppress(httpx.HTTPError):
            if proc.url.startswith("http://"):
                response = loopback_http().get(proc.url + health_path, timeout=1.0)
            else:
                response = httpx.get(proc.url + health_path, timeout=1.0, verify=verify)
            if response.status_code == 200:
                return
        time.sleep(0.05)
    proc.stop()
    raise RuntimeError(f"{proc.args} not ready after {timeout}s:\n{proc.log()}")


@contextlib.contextmanager
def start_iotedge(
    args: list[str],
    *,
    log_dir: Path,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    health_path: str = "/healthz",
    scheme: str = "http",
    timeout: float = 20.0,
    verify: ssl.SSLContext | bool = False,
) -> Iterator[Proc]:
    """Run ``python -m iotedge ARGS --port P`` until the block ends; yields a :class:`Proc`.

    ``verify`` is the TLS context of the readiness probe (one with a client certificate
    for a server that requires one).
    """
    port = port or free_port()
    full = [sys.executable, "-m", "iotedge", *args, "--port", str(port)]
    log_path = log_dir / f"{args[0]}-{port}.log"
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("IOTEDGE_")}
    clean_env.update(env or {})
    with log_path.open("wb") as log_file:
        popen = subprocess.Popen(full, stdout=log_file, stderr=subprocess.STDOUT, env=clean_env)
    proc = Proc(url=f"{scheme}://127.0.0.1:{port}", popen=popen, log_path=log_path, args=full)
    try:
        _wait_ready(proc, health_path, timeout, verify)
        yield proc
    finally:
        proc.stop()
