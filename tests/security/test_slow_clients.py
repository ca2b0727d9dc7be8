"""Hostile connections against a real edge: huge heads, long URLs, slow and half-sent requests."""

import contextlib
import json
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import KEYS, edge_args, edge_env
from tests.procs import Proc, start_iotedge
from tests.security.slow_clients import open_fds, open_slow_connections, rss_kib, wait_closed

pytestmark = pytest.mark.integration

TIMEOUT_S = 2.0
MAX_CONNECTIONS = 128
SLOW_CONNECTIONS = 300


@pytest.fixture(scope="module")
def edge(sim: Proc, logs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    """An edge with short client deadlines and a small connection cap."""
    args = edge_args(
        sim.url,
        tmp_path_factory.mktemp("slow-clients"),
        "--header-timeout", f"{TIMEOUT_S}s",
        "--body-timeout", f"{TIMEOUT_S}s",
        "--max-connections", str(MAX_CONNECTIONS),
    )  # fmt: skip
    with start_iotedge(args, log_dir=logs_dir, env=edge_env()) as proc:
        yield proc


def _port(edge: Proc) -> int:
    return int(edge.url.rsplit(":", 1)[1])


def _raw(edge: Proc, request: bytes) -> tuple[int, bytes]:
    """Send raw bytes; returns the answer's status and body (read until the server closes)."""
    with socket.create_connection(("127.0.0.1", _port(edge)), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def _send_head_until_answered(edge: Proc, size: int) -> tuple[bytes, int]:
    """Send a head with a ``size``-byte header in 64 KiB chunks, stopping once the edge answers.

    The request is built before connecting and sent chunk by chunk, so the edge's head deadline
    never races a slow client library; returns the answer and how many bytes were sent.
    """
    head = b"GET /healthz HTTP/1.1\r\nHost: edge\r\nx-big: " + b"a" * size + b"\r\n\r\n"
    sent = 0
    with socket.create_connection(("127.0.0.1", _port(edge)), timeout=10) as sock:
        while sent < len(head):
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sent += sock.send(head[sent : sent + 65536])
            except (BrokenPipeError, ConnectionResetError):
                break
        answer = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                answer += chunk
    return answer, sent


@pytest.mark.parametrize("size", [20_000, 32 << 20], ids=["20KB", "32MB"])
def test_a_huge_header_is_431_json(edge: Proc, size: int) -> None:
    """A request head over 16 KB gets 431 as JSON, and the edge does not buffer it."""
    rss_before = rss_kib(edge.popen.pid)
    answer, sent = _send_head_until_answered(edge, size)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 "), answer[:300]
    assert json.loads(body)["error"] == "Request Header Fields Too Large"
    assert b"cache-control: no-store" in head.lower()
    assert b"x-content-type-options: nosniff" in head.lower()
    if size > 1 << 20:
        assert sent < size  # answered long before the 32 MB were sent
    assert rss_kib(edge.popen.pid) - rss_before < 8 * 1024  # the 32 MB never sat in memory


@pytest.mark.parametrize("size", [5_000, 17_000, 70_000, 1 << 20], ids=["5KB", "17KB", "70KB", "1MB"])
def test_an_overlong_url_is_414_json_at_any_length(edge: Proc, size: int) -> None:
    """Whatever its length beyond --max-url, a URL gets the JSON 414, never a plain-text 400."""
    status, body = _raw(
        edge, b"GET /objects?q=" + b"a" * size + b" HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n\r\n"
    )
    assert status == 414
    assert b'"error":"URI Too Long"' in body


@pytest.mark.parametrize(
    ("second", "status"),
    [
        (b"GET /objects?q=" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: edge\r\n\r\n", 414),
        (b"GET /healthz HTTP/1.1\r\nHost: edge\r\nx-big: " + b"a" * 20_000 + b"\r\n\r\n", 431),
        (b"NOT HTTP AT ALL\r\n\r\n", 400),
    ],
    ids=["414", "431", "400"],
)
def test_a_refused_head_after_a_kept_alive_answer_is_answered_too(
    edge: Proc, second: bytes, status: int
) -> None:
    """On a connection that already got an answer, a refused head still gets its JSON answer.

    (The guard took the previous, finished request's started response for the refused one's
    and closed the connection without a word: "server disconnected" in the fuzz tests.)
    """
    with socket.create_connection(("127.0.0.1", _port(edge)), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: edge\r\n\r\n")
        first = b""
        while b"\r\n\r\n" not in first or not first.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            assert chunk, first
            first += chunk
        assert first.startswith(b"HTTP/1.1 200 "), first[:300]
        sock.sendall(second)
        answer = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                answer += chunk
    assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer[:300]
    assert answer.rstrip().endswith(b"}")


def test_malformed_http_is_400_json(edge: Proc) -> None:
    """A request line that is not HTTP gets a JSON 400 instead of uvicorn's plain text."""
    status, body = _raw(edge, b"NOT HTTP AT ALL\r\n\r\n")
    assert status == 400
    assert b'"error":"Bad Request"' in body


@pytest.mark.parametrize(
    ("request_bytes", "phase"),
    [
        (b"GET /objects HTTP/1.1\r\nHost: edge\r\nX-Slow: ", "head"),
        (b"POST /query HTTP/1.1\r\nHost: edge\r\nContent-Length: 100\r\n\r\n{", "body"),
    ],
    ids=["slow-head", "slow-body"],
)
def test_slow_requests_get_408_after_the_deadline(edge: Proc, request_bytes: bytes, phase: str) -> None:
    """A head or body that stops arriving is answered 408 JSON and closed after the deadline."""
    started = time.monotonic()
    status, body = _raw(edge, request_bytes)
    waited = time.monotonic() - started
    assert status == 408
    assert f"request {phase} took too long".encode() in body
    assert TIMEOUT_S - 0.2 <= waited < TIMEOUT_S + 5


def test_many_slow_connections_stay_bounded_and_valid_clients_are_served(edge: Proc) -> None:
    """300 half-sent connections: open files stay under the cap, memory flat, a keyed client
    still gets its answer meanwhile, and every slow connection is closed after the deadline."""
    pid = edge.popen.pid
    fds_before, rss_before = open_fds(pid), rss_kib(pid)
    siege = open_slow_connections("127.0.0.1", _port(edge), SLOW_CONNECTIONS)
    try:
        # The server accepts from its backlog at its own pace: take the peak over a second.
        fds_during, rss_during = fds_before, rss_before
        for _ in range(10):
            fds_during, rss_during = max(fds_during, open_fds(pid)), max(rss_during, rss_kib(pid))
            time.sleep(0.1)
        started = time.monotonic()
        served = httpx.get(edge.url + "/objects", headers={"x-api-key": KEYS["client_1"]}, timeout=10)
        served_in = time.monotonic() - started
        still_open, waited = wait_closed(siege.sockets, TIMEOUT_S + 8)  # + slack for a loaded CI
    finally:
        siege.close()
    fds_after = open_fds(pid)
    for _ in range(50):  # bounded: refused connections linger a second before closing
        if fds_after <= fds_before + 10:
            break
        time.sleep(0.1)
        fds_after = open_fds(pid)
    print(  # noqa: T201 - the figures the issue asks for (pytest -s shows them)
        f"\nslow clients: fds {fds_before} -> {fds_during} -> {fds_after}; RSS KiB {rss_before} -> "
        f"{rss_during}; keyed request served in {served_in:.3f} s; all closed in {waited:.1f} s"
    )
    assert served.status_code == 200
    assert served_in < 5
    assert fds_during <= fds_before + MAX_CONNECTIONS + 10  # 300 without the cap
    assert rss_during - rss_before < 16 * 1024
    assert still_open == 0  # every one closed by the edge within the deadline (+ slack)
    assert fds_after <= fds_before + 10
