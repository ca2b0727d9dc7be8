"""Refused TLS handshakes on a real mTLS edge: counted by reason, logged once per peer per minute."""

import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from iotedge.tls import client_context
from tests.conftest import edge_args, edge_env, wait_for
from tests.procs import Proc, free_port, start_iotedge
from tests.security.helpers import cli

pytestmark = pytest.mark.integration

TOKEN = "metrics-token-0123456789abcdef"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A development CA, server and client certificates made by the CLI."""
    out = tmp_path_factory.mktemp("pki")
    cli("certs", "--out", str(out), "--hosts", "localhost,127.0.0.1", "--client", "prometheus")
    return out


@pytest.fixture(scope="module")
def mtls_edge(
    sim: Proc, pki: Path, logs_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Proc, str]]:
    """An edge requiring client certificates; its metrics reuse the certificate, with a token."""
    metrics_port = free_port()
    token_file = tmp_path_factory.mktemp("token") / "metrics-token"
    token_file.write_text(TOKEN + "\n")
    args = edge_args(sim.url, tmp_path_factory.mktemp("tls-errors"))
    args += ["--certfile", str(pki / "server.pem"), "--keyfile", str(pki / "server-key.pem")]
    args += ["--client-ca", str(pki / "ca.pem"), "--metrics-port", str(metrics_port)]
    args += ["--metrics-token-file", str(token_file)]
    probe = client_context(pki / "ca.pem", certfile=pki / "client.pem", keyfile=pki / "client-key.pem")
    with start_iotedge(args, log_dir=logs_dir, env=edge_env(), scheme="https", verify=probe) as proc:
        yield proc, f"https://127.0.0.1:{metrics_port}/metrics"


def _errors(metrics_url: str, pki: Path) -> dict[str, float]:
    """iotedge_tls_handshake_errors_total by reason, scraped over TLS with the token."""
    response = httpx.get(
        metrics_url,
        headers={"authorization": f"Bearer {TOKEN}"},
        verify=client_context(pki / "ca.pem"),
        timeout=10,
    )
    assert response.status_code == 200
    counts = {}
    for line in response.text.splitlines():
        if line.startswith("iotedge_tls_handshake_errors_total{"):
            reason = line.split('reason="', 1)[1].split('"', 1)[0]
            counts[reason] = float(line.rsplit(" ", 1)[1])
    return counts


def test_refused_handshakes_are_counted_by_reason_and_logged_once(
    mtls_edge: tuple[Proc, str], pki: Path
) -> None:
    """Plain HTTP, a client that distrusts the edge, and one without a certificate are each
    counted under their reason; the peer (127.0.0.1) is logged once for all of them."""
    edge, metrics_url = mtls_edge
    before = _errors(metrics_url, pki)
    plain = edge.url.replace("https://", "http://")
    for _ in range(3):
        with pytest.raises(httpx.HTTPError):
            httpx.get(plain + "/healthz", timeout=10)
    with pytest.raises(httpx.ConnectError):
        httpx.get(edge.url + "/healthz", verify=ssl.create_default_context(), timeout=10)
    with pytest.raises(httpx.HTTPError):  # trusts the edge, but shows no certificate
        httpx.get(edge.url + "/healthz", verify=client_context(pki / "ca.pem"), timeout=10).raise_for_status()

    def counted() -> bool:
        after = _errors(metrics_url, pki)
        grown = {reason: after[reason] - before.get(reason, 0) for reason in after}
        return (
            grown["plain_http"] == 3
            and grown["certificate_refused"] >= 1
            and grown["no_client_certificate"] >= 1
        )

    wait_for(counted, 10, "the refused handshakes to be counted")
    lines = [line for line in edge.log().splitlines() if "TLS handshake from 127.0.0.1 refused" in line]
    assert len(lines) == 1, lines
    assert "plain_http" in lines[0]


def test_metrics_over_tls_need_the_token(mtls_edge: tuple[Proc, str], pki: Path) -> None:
    """The metrics port speaks TLS with the API's certificate and answers 401 without the token."""
    _, metrics_url = mtls_edge
    trusted = client_context(pki / "ca.pem")
    refused = httpx.get(metrics_url, verify=trusted, timeout=10)
    assert (refused.status_code, refused.json()) == (401, {"error": "Unauthorized"})
    with pytest.raises(httpx.HTTPError):
        httpx.get(metrics_url.replace("https://", "http://"), timeout=10)
    assert _errors(metrics_url, pki)  # with the token: 200 and the counters
