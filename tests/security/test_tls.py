"""Real TLS: `iotedge certs`, an https edge, mTLS, and the edge polling an https simulator."""

import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme
from cryptography import x509

from iotedge.tls import client_context
from tests.conftest import KEYS, edge_args, edge_env, wait_for
from tests.procs import Proc, start_iotedge
from tests.security.helpers import UNAUTHORIZED, cli

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A development CA, server and client certificates made by the CLI."""
    out = tmp_path_factory.mktemp("pki")
    cli("certs", "--out", str(out), "--hosts", "localhost,127.0.0.1", "--client", "grafana")
    return out


def _trusting(pki: Path, *, client_cert: bool = False) -> ssl.SSLContext:
    if client_cert:
        return client_context(pki / "ca.pem", certfile=pki / "client.pem", keyfile=pki / "client-key.pem")
    return client_context(pki / "ca.pem")


def _tls_flags(pki: Path) -> list[str]:
    return ["--certfile", str(pki / "server.pem"), "--keyfile", str(pki / "server-key.pem")]


def test_certs_command_writes_a_ca_and_reuses_it(pki: Path) -> None:
    """The CLI writes six PEM files, private keys owner-only, and keeps the CA on a rerun."""
    names = {p.name for p in pki.iterdir()}
    assert names == {"ca.pem", "ca-key.pem", "server.pem", "server-key.pem", "client.pem", "client-key.pem"}
    assert all(oct((pki / n).stat().st_mode & 0o777) == "0o600" for n in names if n.endswith("-key.pem"))
    server = x509.load_pem_x509_certificate((pki / "server.pem").read_bytes())
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    ca_before = (pki / "ca.pem").read_bytes()
    rerun = cli("certs", "--out", str(pki), "--hosts", "localhost,127.0.0.1", "--client", "grafana")
    assert "reused" in rerun.stdout
    assert (pki / "ca.pem").read_bytes() == ca_before


@pytest.fixture(scope="module")
def tls_edge(
    sim: Proc, pki: Path, logs_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proc]:
    """An edge serving HTTPS with the development server certificate."""
    args = edge_args(sim.url, tmp_path_factory.mktemp("tls-edge"), *_tls_flags(pki))
    with start_iotedge(args, log_dir=logs_dir, env=edge_env(), scheme="https") as proc:
        yield proc


def test_client_trusting_the_ca_connects(tls_edge: Proc, pki: Path) -> None:
    """A client that trusts the development CA gets answers, with HSTS."""
    response = httpx.get(
        tls_edge.url + "/objects", headers={"x-api-key": KEYS["client_1"]}, verify=_trusting(pki), timeout=10
    )
    assert response.status_code == 200
    assert response.headers["strict-transport-security"].startswith("max-age=")
    assert "https://" in tls_edge.log()


@pytest.mark.parametrize("trust", ["system", "other-ca"])
def test_client_not_trusting_the_ca_is_refused(tls_edge: Proc, trust: str) -> None:
    """With the system CAs, or another CA, the handshake fails: certificate verify failed."""
    if trust == "system":
        verify: ssl.SSLContext | bool = True
    else:
        verify = ssl.create_default_context()
        trustme.CA().configure_trust(verify)
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(tls_edge.url + "/healthz", verify=verify, timeout=10)


def test_plain_http_to_the_tls_port_gets_nothing(tls_edge: Proc) -> None:
    """A cleartext request to the TLS port gets no HTTP answer at all."""
    with pytest.raises(httpx.HTTPError):
        httpx.get(tls_edge.url.replace("https://", "http://") + "/healthz", timeout=10)


@pytest.fixture(scope="module")
def mtls_edge(
    sim: Proc, pki: Path, logs_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proc]:
    """An edge requiring client certificates signed by the development CA."""
    args = edge_args(sim.url, tmp_path_factory.mktemp("mtls-edge"), *_tls_flags(pki))
    args += ["--client-ca", str(pki / "ca.pem")]
    probe = _trusting(pki, client_cert=True)
    with start_iotedge(args, log_dir=logs_dir, env=edge_env(), scheme="https", verify=probe) as proc:
        yield proc


def test_mtls_refuses_a_client_without_certificate(mtls_edge: Proc, pki: Path) -> None:
    """Trusting the server is not enough: no client certificate, no answer."""
    with pytest.raises(httpx.HTTPError):
        httpx.get(mtls_edge.url + "/healthz", verify=_trusting(pki), timeout=10)


def test_mtls_refuses_a_certificate_from_another_ca(mtls_edge: Proc, pki: Path) -> None:
    """A client certificate the edge's client CA did not sign is refused."""
    other = trustme.CA().issue_cert("intruder@example.invalid")
    context = _trusting(pki)
    other.configure_cert(context)
    with pytest.raises(httpx.HTTPError):
        httpx.get(mtls_edge.url + "/healthz", verify=context, timeout=10)


def test_mtls_accepts_the_client_certificate_and_still_wants_a_key(mtls_edge: Proc, pki: Path) -> None:
    """With the client certificate the TLS layer lets the request in; the API key still decides."""
    context = _trusting(pki, client_cert=True)
    with httpx.Client(verify=context, timeout=10) as client:
        keyed = client.get(mtls_edge.url + "/objects", headers={"x-api-key": KEYS["client_1"]})
        keyless = client.get(mtls_edge.url + "/objects")
    assert keyed.status_code == 200
    assert {obj["client"] for obj in keyed.json()["objects"]} <= {"client_1"}
    assert (keyless.status_code, keyless.json()) == (401, UNAUTHORIZED)


@pytest.fixture(scope="module")
def https_sim(pki: Path, logs_dir: Path) -> Iterator[Proc]:
    """The simulator serving HTTPS with the development server certificate."""
    args = ["sim", "--seed", "7", "--interval", "1", *_tls_flags(pki)]
    with start_iotedge(args, log_dir=logs_dir, scheme="https") as proc:
        yield proc


def _readyz(edge: Proc) -> dict[str, object]:
    body: dict[str, object] = httpx.get(edge.url + "/readyz", timeout=10).json()
    return body


def test_edge_polls_an_https_device_api_verified_by_the_ca(
    https_sim: Proc, pki: Path, logs_dir: Path, tmp_path: Path
) -> None:
    """With --upstream-ca the edge verifies the simulator's certificate and stores its data."""
    args = edge_args(https_sim.url, tmp_path, "--upstream-ca", str(pki / "ca.pem"))
    with start_iotedge(args, log_dir=logs_dir, env=edge_env()) as edge:
        wait_for(lambda: _readyz(edge)["ready"] is True, 20, "the edge to poll the https simulator")
        objects = httpx.get(edge.url + "/objects", headers={"x-api-key": KEYS["*"]}, timeout=10).json()
    assert objects["count"] > 0
    assert any(obj["latest"] for obj in objects["objects"])


def test_edge_refuses_an_https_device_api_it_cannot_verify(
    https_sim: Proc, logs_dir: Path, tmp_path: Path
) -> None:
    """Without the CA the edge's TLS check fails: no data, a connect error reported (ready: it can serve)."""
    with start_iotedge(edge_args(https_sim.url, tmp_path), log_dir=logs_dir, env=edge_env()) as edge:

        def failed_twice() -> bool:
            upstream = _readyz(edge)["checks"]["upstream"]  # type: ignore[index]
            return bool(upstream["consecutive_failures"] >= 2)

        wait_for(failed_twice, 20, "two failed poll cycles")
        body = _readyz(edge)
        objects = httpx.get(edge.url + "/objects", headers={"x-api-key": KEYS["*"]}, timeout=10).json()
    assert body["ready"] is True
    assert body["degraded"] == ["upstream"]
    assert body["checks"]["upstream"]["ok"] is False  # type: ignore[index]
    assert "connect" in str(body["checks"]["upstream"]["last_error"])  # type: ignore[index]
    assert objects["count"] == 0
