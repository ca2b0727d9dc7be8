"""Start and stop the benchmark's server processes on 127.0.0.1, and watch them."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

__all__ = ["HOST", "Server", "free_port", "say", "serve", "settle"]

HOST = "127.0.0.1"


def say(message: str) -> None:
    """A progress line on stderr."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A process we started: its URL, its log and how long it took to answer."""

    name: str
    url: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    ready_after_s: float = 0.0

    def status_kib(self, key: str) -> int:
        """A ``/proc/<pid>/status`` field in KiB (VmRSS, VmHWM)."""
        for line in Path(f"/proc/{self.popen.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise KeyError(key)

    def cpu_ticks(self) -> int:
        """User plus system CPU time so far, in clock ticks."""
        stat = Path(f"/proc/{self.popen.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return int(fields[11]) + int(fields[12])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit within ``timeout``."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)


def _wait_ready(server: Server, path: str, headers: Mapping[str, str], timeout: float) -> None:
    started = time.monotonic()
    deadline = started + timeout
    with httpx.Client(timeout=5.0, headers=dict(headers)) as client:
        while time.monotonic() < deadline:
            if server.popen.poll() is not None:
                raise RuntimeError(f"{server.name} exited: {server.log_path.read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get(server.url + path).status_code == 200:
                    return
            time.sleep(0.005)
    raise RuntimeError(f"{server.name} not ready after {timeout}s: {server.log_path.read_text()}")


@contextlib.contextmanager
def serve(
    name: str,
    argv: Sequence[str],
    *,
    port: int,
    log_dir: Path,
    ready_path: str = "/healthz",
    headers: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> Iterator[Server]:
    """Run ``argv`` until the block ends; yields once ``ready_path`` answers 200."""
    log_path = log_dir / f"{name}-{port}.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("IOTEDGE_")}
    full_env.update(env or {})
    started = time.monotonic()
    with log_path.open("wb") as log_file:
        popen = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, env=full_env)
    server = Server(name=name, url=f"http://{HOST}:{port}", popen=popen, log_path=log_path)
    try:
        _wait_ready(server, ready_path, headers or {}, timeout)
        server.ready_after_s = time.monotonic() - started
        yield server
    finally:
        server.stop()


def settle(servers: Sequence[Server], limit_s: float) -> None:
    """Wait until ``servers`` stop using CPU (work queued by the last run is done)."""
    deadline = time.monotonic() + limit_s
    before = sum(s.cpu_ticks() for s in servers)
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = sum(s.cpu_ticks() for s in servers)
        if now - before <= 1:
            return
        before = now
