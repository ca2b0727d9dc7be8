"""Rate limits, key lifecycle functions, security middleware and the development PKI."""

import asyncio
import datetime as dt
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
from fastapi import FastAPI, Request

from iotedge.certs import create_dev_pki
from iotedge.config import load_edge_settings
from iotedge.edge.auth import (
    KeyRing,
    create_key,
    delete_client,
    list_keys,
    read_usage,
    revoke_keys,
    usage_path,
)
from iotedge.edge.deps import admit
from iotedge.edge.hardening import API_CSP, SecurityMiddleware
from iotedge.edge.ratelimit import RateLimits, TokenBucket
from iotedge.errors import AuthError, ConfigError, RateLimited
from iotedge.tls import client_context, server_options
from iotedge.web import install_json_errors


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_refills_at_its_rate() -> None:
    """A bucket gives ``capacity`` tokens at once, then one per 1/rate seconds."""
    bucket = TokenBucket(3, 2.0, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.5)
    assert bucket.take(0.25) == pytest.approx(0.25)
    assert bucket.take(0.5) == 0.0
    assert bucket.take(100.0) == 0.0  # refills to capacity, not beyond
    assert bucket.take(100.0) == 0.0
    assert bucket.take(100.0) == 0.0
    assert bucket.take(100.0) > 0


def test_key_budget_is_per_key() -> None:
    """One key spending its burst gets RateLimited with the wait; another key is untouched."""
    clock = FakeClock()
    limits = RateLimits(rate=1.0, burst=2, auth_failures=0, clock=clock)
    limits.check_key("a")
    limits.check_key("a")
    with pytest.raises(RateLimited) as info:
        limits.check_key("a")
    assert info.value.retry_after == pytest.approx(1.0)
    limits.check_key("b")
    clock.now += 1.0
    limits.check_key("a")


def test_costly_requests_put_the_key_in_debt() -> None:
    """An admitted request's extra cost is charged: the key then waits for the debt to refill."""
    clock = FakeClock()
    limits = RateLimits(rate=10.0, burst=20, auth_failures=0, clock=clock)
    limits.check_key("a")
    limits.charge("a", 29.0)  # 1 + 29 = 30 tokens: 10 more than the 20 there were
    with pytest.raises(RateLimited) as info:
        limits.check_key("a")
    assert info.value.retry_after == pytest.approx(1.1)  # from -10 back to 1 token at 10/s
    limits.charge("a", 1000.0)  # the debt is capped at one burst
    clock.now += 4.0
    limits.check_key("a")
    limits.check_key("b")  # other keys are untouched


def test_failed_logins_block_the_address_even_for_a_valid_key(tmp_path: Path) -> None:
    """After N failures an address gets 429 before its key is looked at; it recovers with time."""
    clock = FakeClock()
    ring = KeyRing(tmp_path / "keys.json", env_keys="client_1=good-key-0123456789")
    limits = RateLimits(rate=0, burst=1, auth_failures=3, clock=clock)
    for _ in range(3):
        with pytest.raises(AuthError):
            admit(ring, limits, "wrong-key-0123456789", "10.0.0.1")
    with pytest.raises(RateLimited) as info:
        admit(ring, limits, "good-key-0123456789", "10.0.0.1")
    assert 0 < info.value.retry_after <= 20.0  # one failure comes back every 60/3 s
    assert admit(ring, limits, "good-key-0123456789", "10.0.0.2").client == "client_1"
    clock.now += info.value.retry_after
    assert admit(ring, limits, "good-key-0123456789", "10.0.0.1").client == "client_1"


def test_zero_disables_both_limits(tmp_path: Path) -> None:
    """rate=0 and auth_failures=0 never raise RateLimited."""
    ring = KeyRing(tmp_path / "keys.json", env_keys="client_1=good-key-0123456789")
    limits = RateLimits(rate=0, burst=1, auth_failures=0, clock=FakeClock())
    for _ in range(50):
        with pytest.raises(AuthError):
            admit(ring, limits, "bad", "10.0.0.1")
        admit(ring, limits, "good-key-0123456789", "10.0.0.1")


def test_revoke_delete_and_list(tmp_path: Path) -> None:
    """Revoking by id or client, deleting a client and listing work on the file only."""
    path = tmp_path / "keys.json"
    first, _ = create_key(path, "client_1")
    second, _ = create_key(path, "client_1")
    other, other_key = create_key(path, "client_2")
    assert [r.id for r in list_keys(path)] == [first.id, second.id, other.id]
    assert [r.id for r in revoke_keys(path, key_ids=[first.id])] == [first.id]
    assert revoke_keys(path, key_ids=[first.id]) == []  # already revoked: unchanged
    with pytest.raises(ConfigError, match="nope"):
        revoke_keys(path, key_ids=["nope"])
    assert [r.id for r in revoke_keys(path, client="client_1")] == [second.id]
    assert delete_client(path, "client_2") == 1
    assert other_key not in path.read_text()
    with pytest.raises(AuthError):
        KeyRing(path).authenticate(other_key)
    assert {r.id for r in list_keys(path) if r.revoked_at is not None} == {first.id, second.id}


def test_last_use_is_written_to_a_sidecar(tmp_path: Path) -> None:
    """Authenticating records the key id and time in keys.json.used, never the key."""
    path = tmp_path / "keys.json"
    record, key = create_key(path, "client_1")
    ring = KeyRing(path, clock=lambda: 1234.0, usage_flush_s=3600)
    ring.authenticate(key)
    assert read_usage(path) == {}  # not flushed yet
    ring.flush_usage()
    assert read_usage(path) == {record.id: 1234.0}
    assert key not in usage_path(path).read_text()
    assert oct(usage_path(path).stat().st_mode & 0o777) == "0o600"


def test_tls_settings_come_in_pairs() -> None:
    """A certificate needs its key, and mTLS needs both; the message hides the API keys."""
    secret = "client_1=very-secret-key-0123456789"
    with pytest.raises(ConfigError, match="together") as info:
        load_edge_settings({}, certfile="server.pem", api_keys=secret)
    assert "very-secret" not in str(info.value)
    with pytest.raises(ConfigError, match="needs certfile"):
        load_edge_settings({}, client_ca="ca.pem")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A development PKI in a temporary directory."""
    out = tmp_path_factory.mktemp("pki")
    create_dev_pki(out, hosts=["localhost", "127.0.0.1"], client="grafana")
    return out


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_dev_pki_chains_and_names(pki: Path) -> None:
    """The server certificate verifies for its hosts and not others; the client one as a client."""
    store = Store([_load(pki / "ca.pem")])
    now = dt.datetime.now(dt.UTC)
    server = _load(pki / "server.pem")
    builder = PolicyBuilder().store(store).time(now)
    builder.build_server_verifier(x509.DNSName("localhost")).verify(server, [])
    with pytest.raises(VerificationError):
        builder.build_server_verifier(x509.DNSName("example.invalid")).verify(server, [])
    client = builder.build_client_verifier().verify(_load(pki / "client.pem"), [])
    assert client.chain[0].subject.rfc4514_string().startswith("CN=grafana")
    for key in ("ca-key.pem", "server-key.pem", "client-key.pem"):
        assert oct((pki / key).stat().st_mode & 0o777) == "0o600"


def test_dev_pki_reuses_its_ca(pki: Path) -> None:
    """A second run keeps the CA, so issued certificates still chain to the trusted one."""
    before = (pki / "ca.pem").read_bytes()
    result = create_dev_pki(pki, hosts=["edge.local"])
    assert result.ca_reused
    assert (pki / "ca.pem").read_bytes() == before
    san = _load(pki / "server.pem").extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.DNSName) == ["edge.local"]


def test_tls_options_check_files(pki: Path, tmp_path: Path) -> None:
    """Missing files and mismatched key pairs are ConfigErrors; good ones give uvicorn options."""
    with pytest.raises(ConfigError, match="does not exist"):
        server_options(tmp_path / "none.pem", pki / "server-key.pem", None)
    with pytest.raises(ConfigError, match="cannot use"):
        server_options(pki / "server.pem", pki / "client-key.pem", None)
    options = server_options(pki / "server.pem", pki / "server-key.pem", pki / "ca.pem")
    assert options["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    assert client_context(pki / "ca.pem").verify_mode == ssl.CERT_REQUIRED


def _hardened_app() -> FastAPI:
    app = FastAPI()
    install_json_errors(app)
    app.add_middleware(SecurityMiddleware, max_body=100, max_url=200)

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    return app


async def _post_both() -> tuple[httpx.Response, httpx.Response]:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b"x" * 40

    transport = httpx.ASGITransport(app=_hardened_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        big = await client.post("/echo", content=chunks())
        small = await client.post("/echo", content=b"y" * 100)
    return big, small


def test_streamed_body_over_the_limit_is_413_json() -> None:
    """A chunked body (no Content-Length) is counted as it arrives: 413 with a JSON body."""
    big, small = asyncio.run(_post_both())
    assert big.status_code == 413
    assert big.json() == {"error": "Request body too large"}
    assert small.json() == {"size": 100}
    assert small.headers["content-security-policy"] == API_CSP
    assert big.headers["x-content-type-options"] == "nosniff"
