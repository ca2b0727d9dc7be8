"""HTTP hygiene of a real edge: security headers, size limits, quiet errors, no keys in logs."""

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from iotedge.edge.hardening import API_CSP, DOCS_CSP
from tests.conftest import KEYS, edge_args, edge_env, require, wait_for
from tests.procs import Proc, free_port, start_iotedge

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def edge(sim: Proc, logs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    """An edge with a small body limit."""
    args = edge_args(sim.url, tmp_path_factory.mktemp("hygiene"), "--max-body", "1024", "--max-url", "2048")
    with start_iotedge(args, log_dir=logs_dir, env=edge_env()) as proc:
        yield proc


@pytest.mark.parametrize(
    ("path", "key", "status"),
    [
        ("/objects", KEYS["client_1"], 200),
        ("/objects", None, 401),
        ("/objects/nope", KEYS["client_1"], 404),
        ("/anomalies?limit=0", KEYS["client_1"], 422),
        ("/no/such/route", None, 404),
        ("/openapi.json", None, 200),
    ],
)
def test_api_answers_carry_security_headers(edge: Proc, path: str, key: str | None, status: int) -> None:
    """Successes and errors alike: nosniff, no-store, no referrer, no framing, a deny-all CSP."""
    response = httpx.get(edge.url + path, headers={"x-api-key": key} if key else {}, timeout=10)
    assert response.status_code == status
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["content-security-policy"] == API_CSP
    assert "server" not in response.headers
    assert "strict-transport-security" not in response.headers  # plain HTTP: HSTS would be ignored


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_load_from_the_edge_itself(edge: Proc, page: str) -> None:
    """/docs and /redoc load every script and style from the edge (offline sites), and their
    policy allows this origin only, with no inline script."""
    response = httpx.get(edge.url + page, timeout=10)
    assert response.status_code == 200
    assert response.headers["content-security-policy"] == DOCS_CSP
    assert (
        "https://" not in DOCS_CSP
        and "'unsafe-inline'" not in DOCS_CSP.split("script-src", 1)[1].split(";")[0]
    )
    sources = re.findall(r'(?:src|href)="([^"]+)"', response.text)
    assert sources and all(source.startswith("/docs/assets/") for source in sources)
    assert "<script>" not in response.text  # every script is a file: no inline code to allow
    for source in sources:
        asset = httpx.get(edge.url + source, timeout=10)
        assert asset.status_code == 200, source
        assert asset.headers["content-type"].startswith(("text/javascript", "text/css")), source
        assert asset.headers["content-security-policy"] == API_CSP
    assert httpx.get(edge.url + "/docs/assets/MANIFEST.json", timeout=10).status_code == 404


def test_oversized_body_is_413_json(edge: Proc) -> None:
    """A body over --max-body is refused before any handler, as JSON."""
    response = httpx.post(edge.url + "/objects", content=b"{" + b" " * 2000 + b"}", timeout=10)
    assert response.status_code == 413
    assert response.json()["error"] == "Request body too large"


def test_overlong_url_is_414_json(edge: Proc) -> None:
    """A URL over --max-url is refused as JSON, with the same headers."""
    response = httpx.get(
        edge.url + "/objects", params={"client_id": "c" * 3000}, headers={"x-api-key": KEYS["client_1"]}
    )
    assert response.status_code == 414
    assert response.json()["error"] == "URI Too Long"
    assert response.headers["cache-control"] == "no-store"


def test_errors_and_logs_hold_no_secrets(edge: Proc) -> None:
    """A bad key is answered without detail, and neither it nor a good key reaches the log."""
    bad = "guessed-key-0123456789-abcdef"
    refused = httpx.get(edge.url + "/objects", headers={"x-api-key": bad}, timeout=10)
    accepted = httpx.get(edge.url + "/objects", headers={"x-api-key": KEYS["client_2"]}, timeout=10)
    assert refused.json() == {"error": "Unauthorized"}
    assert accepted.status_code == 200
    log = edge.log()
    assert "401 on /objects: unknown key" in log
    assert all(key not in log for key in [bad, *KEYS.values()])


_SECRET_PATTERNS = [
    re.compile(r"iek_[0-9a-f]{8}_[A-Za-z0-9_-]{40,}"),  # a key made by `iotedge keys create`
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
]


def test_repository_holds_no_secrets() -> None:
    """No generated API key and no private key is tracked by git (tests make theirs at run time)."""
    root = Path(__file__).resolve().parents[2]
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=False, timeout=60)
    require(listed.returncode == 0, "a git checkout")
    files = [root / name for name in listed.stdout.decode().split("\0") if name]
    assert files
    found = []
    for path in files:
        if not path.is_file():
            continue
        text = path.read_bytes().decode(errors="ignore")
        found += [f"{path.relative_to(root)}: {p.pattern}" for p in _SECRET_PATTERNS if p.search(text)]
    assert not found


def test_readyz_hides_internal_urls_from_callers_without_a_key(
    logs_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """With the device API down, /readyz names the failure to anyone, its URL only to a key."""
    dead = f"http://127.0.0.1:{free_port()}"
    args = edge_args(dead, tmp_path_factory.mktemp("readyz"))
    with start_iotedge(args, log_dir=logs_dir, env=edge_env()) as edge:

        def failed() -> bool:
            body = httpx.get(edge.url + "/readyz", timeout=10).json()
            return bool(body["checks"]["upstream"]["last_error"])

        wait_for(failed, 20, "a failed poll")
        anonymous = httpx.get(edge.url + "/readyz", timeout=10)
        keyed = httpx.get(edge.url + "/readyz", headers={"x-api-key": KEYS["*"]}, timeout=10)
    assert anonymous.status_code == keyed.status_code == 200  # a dead device API is not readiness
    assert anonymous.json()["degraded"] == ["upstream"]
    assert dead not in anonymous.text and "://" not in anonymous.text
    assert "connect" in anonymous.json()["checks"]["upstream"]["last_error"]
    assert dead in keyed.json()["checks"]["upstream"]["last_error"]
