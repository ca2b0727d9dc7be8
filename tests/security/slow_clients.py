"""Slow and half-sent connections against a real server, and what they cost its process."""

import selectors
import socket
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["HALF_SENT", "Siege", "open_fds", "open_slow_connections", "rss_kib", "wait_closed"]

HALF_SENT = (
    b"",  # connects, says nothing
    b"GET /objects HTTP/1.1\r\nHost: edge\r\nX-Slow: ",  # a head that never ends
    b"POST /query HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n{",
)
"""What each slow connection sends before going quiet, in turn."""


def open_fds(pid: int) -> int:
    """Open file descriptors of a process (Linux /proc)."""
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def rss_kib(pid: int) -> int:
    """Resident memory of a process in KiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


@dataclass
class Siege:
    """Connections opened by :func:`open_slow_connections` (the caller closes them)."""

    sockets: list[socket.socket]
    refused: int  # connections the server refused or reset at once

    def close(self) -> None:
        """Close every client socket."""
        for sock in self.sockets:
            sock.close()


def open_slow_connections(host: str, port: int, count: int) -> Siege:
    """Open ``count`` connections that each send one of :data:`HALF_SENT` and go quiet."""
    sockets: list[socket.socket] = []
    refused = 0
    for index in range(count):
        try:
            sock = socket.create_connection((host, port), timeout=5)
            sock.sendall(HALF_SENT[index % len(HALF_SENT)])
        except OSError:
            refused += 1
            continue
        sock.setblocking(False)
        sockets.append(sock)
    return Siege(sockets=sockets, refused=refused)


def wait_closed(sockets: list[socket.socket], timeout: float) -> tuple[int, float]:
    """Wait until the server has closed every socket; returns (still open, seconds waited)."""
    started = time.monotonic()
    deadline = started + timeout
    selector = selectors.DefaultSelector()
    for sock in sockets:
        selector.register(sock, selectors.EVENT_READ)
    open_count = len(sockets)
    while open_count and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=max(0.0, deadline - time.monotonic())):
            peer = key.fileobj
            assert isinstance(peer, socket.socket)
            try:
                data = peer.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:  # reset: closed as well
                data = b""
            if not data:
                selector.unregister(peer)
                open_count -= 1
    selector.close()
    return open_count, time.monotonic() - started
