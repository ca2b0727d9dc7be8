"""The compose stack's wiring without Docker: compose.yaml's commands and environment, on loopback.

The sim and edge services' `command` and `environment` are read from compose.yaml and
interpolated with .env.example's values (placeholders filled as `make env` does). Service
hosts become 127.0.0.1, container ports become free loopback ports, volumes become temporary
directories; then the same `iotedge` commands run as real processes.
"""

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from tests.conftest import require
from tests.delivery.compose_env import (
    REPO,
    fill_placeholders,
    interpolate,
    load_compose,
    parse_env_file,
)
from tests.pgdb import scratch_database, server_problem
from tests.procs import Proc, free_port, start_iotedge

pytestmark = pytest.mark.integration

_CLIENT_OBJECTS = {
    "client_1": ["device_1", "device_2"],
    "client_2": ["device_3", "device_4"],
    "client_3": ["device_5", "device_6"],
}


class Loopback:
    """Maps compose services' hosts, ports and volumes onto 127.0.0.1 and a temp directory."""

    def __init__(self, compose: dict[str, Any], variables: dict[str, str], root: Path) -> None:
        self.services: dict[str, Any] = compose["services"]
        self.variables = variables
        self.root = root
        self.ports: dict[tuple[str, str], int] = {}
        # Database services (compose's postgres) -> the URL of a scratch database on loopback.
        self.databases: dict[str, str] = {}

    def port(self, service: str, container_port: str) -> int:
        """The loopback port standing in for ``service:container_port``."""
        if (service, container_port) not in self.ports:
            taken = set(self.ports.values())
            port = free_port()
            for _ in range(20):
                if port not in taken:
                    break
                port = free_port()
            self.ports[(service, container_port)] = port
        return self.ports[(service, container_port)]

    def _volume_path(self, service: str, value: str) -> str | None:
        mounts = [volume.split(":")[:2] for volume in self.services[service].get("volumes", [])]
        # A tmpfs is the service's own scratch directory.
        mounts += [[f"tmpfs-{service}{target}", target] for target in self.services[service].get("tmpfs", [])]
        for source, target in mounts:
            if value == target or value.startswith(target.rstrip("/") + "/"):
                local = self.root / source.strip("./").replace("/", "_")
                local.mkdir(parents=True, exist_ok=True)
                return str(local) + value[len(target) :]
        return None

    def _url(self, value: str) -> str | None:
        parts = urlsplit(value)
        if parts.scheme == "postgresql" and parts.hostname in self.databases:
            return self.databases[parts.hostname]
        if parts.scheme in ("http", "https") and parts.hostname in self.services:
            port = str(parts.port or (443 if parts.scheme == "https" else 80))
            netloc = f"127.0.0.1:{self.port(parts.hostname, port)}"
            return urlunsplit(parts._replace(netloc=netloc))
        return None

    def environment(self, service: str) -> dict[str, str]:
        """The service's interpolated environment, translated to loopback."""
        raw = {
            key: interpolate(str(value), self.variables)
            for key, value in self.services[service].get("environment", {}).items()
        }
        result: dict[str, str] = {}
        for key, value in raw.items():
            if key.endswith("_HOST") and (value == "0.0.0.0" or value in self.services):
                result[key] = "127.0.0.1"
            elif key.endswith("_PORT") and value.isdigit():
                peer = raw.get(key.removesuffix("_PORT") + "_HOST", "")
                owner = peer if peer in self.services else service
                result[key] = str(self.port(owner, value))
            elif (url := self._url(value)) is not None:
                result[key] = url
            elif (path := self._volume_path(service, value)) is not None:
                result[key] = path
            else:
                result[key] = value
        return result

    def command(self, service: str) -> list[str]:
        """The service's command (arguments to the image's `iotedge` entry point)."""
        command = self.services[service]["command"]
        assert isinstance(command, list)
        return [interpolate(str(part), self.variables) for part in command]


@pytest.fixture
def loopback(tmp_path: Path) -> Loopback:
    """compose.yaml with .env.example's values, mapped onto loopback and ``tmp_path``."""
    variables = parse_env_file(fill_placeholders((REPO / ".env.example").read_text()))
    return Loopback(load_compose(), variables, tmp_path)


@pytest.fixture
def compose_sim(loopback: Loopback, logs_dir: Path) -> Iterator[Proc]:
    """The sim service as compose configures it, on loopback."""
    env = loopback.environment("sim")
    port = int(env["IOTEDGE_SIM_PORT"])
    assert port == loopback.port("sim", "8000")
    with start_iotedge(loopback.command("sim"), log_dir=logs_dir, port=port, env=env) as proc:
        yield proc


def _edge_available() -> bool:
    result = subprocess.run(
        [sys.executable, "-m", "iotedge", "edge", "--help"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    return result.returncode == 0


def _wait_for(check: Any, what: str, timeout: float = 30.0) -> Any:
    """Poll ``check()`` until it returns something truthy (bounded by ``timeout``)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    pytest.fail(f"{what}: not within {timeout}s (last: {last!r})")


def _object_ids(body: Any) -> list[str]:
    objects = body["objects"] if isinstance(body, dict) else body
    return sorted(str(obj["id"]) for obj in objects)


def test_loopback_translation(loopback: Loopback) -> None:
    """Hosts, ports, URLs and the data volume of the edge service map onto loopback."""
    env = loopback.environment("edge")
    sim_port = loopback.port("sim", "8000")
    assert env["IOTEDGE_HOST"] == "127.0.0.1"
    assert env["IOTEDGE_UPSTREAM"] == f"http://127.0.0.1:{sim_port}"
    assert env["IOTEDGE_SMTP_HOST"] == "127.0.0.1"
    assert env["IOTEDGE_SMTP_PORT"] == str(loopback.port("mailpit", "1025"))
    assert env["IOTEDGE_WEBHOOK_URL"].startswith(f"http://127.0.0.1:{loopback.port('webhook', '8080')}/")
    assert Path(env["IOTEDGE_DATA_DIR"]).is_dir()
    assert str(loopback.root) in env["IOTEDGE_DATA_DIR"]
    assert len(set(loopback.ports.values())) == len(loopback.ports)
    assert "change-me" not in env["IOTEDGE_API_KEYS"]


def test_loopback_translation_of_the_scale_roles(loopback: Loopback) -> None:
    """api and collector: the store URL becomes the scratch database, /data their own tmpfs directory."""
    loopback.databases["postgres"] = "postgresql://postgres@127.0.0.1:5432/scratch"
    api, collector = loopback.environment("api"), loopback.environment("collector")
    assert (
        api["IOTEDGE_STORE"] == collector["IOTEDGE_STORE"] == "postgresql://postgres@127.0.0.1:5432/scratch"
    )
    assert api["IOTEDGE_DATA_DIR"] != collector["IOTEDGE_DATA_DIR"]
    for env in (api, collector):
        assert Path(env["IOTEDGE_DATA_DIR"]).is_dir()
        assert str(loopback.root) in env["IOTEDGE_DATA_DIR"]
    assert api["IOTEDGE_PORT"] != collector["IOTEDGE_PORT"]
    assert api["IOTEDGE_METRICS_PORT"] != collector["IOTEDGE_METRICS_PORT"]
    assert collector["IOTEDGE_UPSTREAM"] == f"http://127.0.0.1:{loopback.port('sim', '8000')}"


def test_simulator_serves_as_compose_configures_it(compose_sim: Proc) -> None:
    """The sim service's command and environment give the course's six-object fleet."""
    objects = httpx.get(compose_sim.url + "/iot_objects", timeout=10).json()
    by_client: dict[str, list[str]] = {}
    for obj in objects:
        by_client.setdefault(obj["client"], []).append(obj["id"])
    assert by_client == _CLIENT_OBJECTS


def test_edge_reaches_the_simulator_and_serves_each_key_its_scope(
    loopback: Loopback, compose_sim: Proc, logs_dir: Path
) -> None:
    """The edge, run as compose runs it, polls the simulator and scopes /objects by x-api-key.

    Needs the edge server (`iotedge edge`): skipped locally, failed in CI, until it exists.
    """
    require(_edge_available(), "the `iotedge edge` command (edge server issue)")
    env = loopback.environment("edge")
    keys = dict(item.split("=", 1) for item in env["IOTEDGE_API_KEYS"].split(","))
    port = int(env["IOTEDGE_PORT"])
    with start_iotedge(loopback.command("edge"), log_dir=logs_dir, port=port, env=env) as edge:
        # Ready means the store is writable and the upstream (our simulator) was reached.
        _wait_for(
            lambda: httpx.get(edge.url + "/readyz", timeout=5).status_code == 200,
            "edge /readyz",
        )

        def _objects(key: str) -> list[str]:
            response = httpx.get(edge.url + "/objects", headers={"x-api-key": key}, timeout=5)
            assert response.status_code == 200, response.text
            return _object_ids(response.json())

        for client, expected in _CLIENT_OBJECTS.items():
            got = _wait_for(lambda key=keys[client]: _objects(key), f"{client}'s objects")
            assert got == expected, client
        everything = _objects(keys["*"])
        assert everything == sorted(obj for objs in _CLIENT_OBJECTS.values() for obj in objs)

        for headers in ({}, {"x-api-key": "not-a-key"}):
            denied = httpx.get(edge.url + "/objects", headers=headers, timeout=5)
            assert denied.status_code == 401
            assert denied.json() == {"error": "Unauthorized"}

        metrics_url = f"http://127.0.0.1:{env['IOTEDGE_METRICS_PORT']}/metrics"
        assert httpx.get(metrics_url, timeout=5).status_code == 401  # no token, no metrics
        token = {"authorization": f"Bearer {env['IOTEDGE_METRICS_TOKEN']}"}
        metrics = httpx.get(metrics_url, headers=token, timeout=5)
        assert metrics.status_code == 200
        assert "edge_cpu_usage" in metrics.text


def _roles_available() -> bool:
    result = subprocess.run(
        [sys.executable, "-m", "iotedge", "edge", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.returncode == 0 and "--role" in result.stdout and "--store" in result.stdout


def test_scale_profile_roles_share_one_postgresql(
    loopback: Loopback, compose_sim: Proc, logs_dir: Path
) -> None:
    """compose's api and collector services, run as configured, on one PostgreSQL database.

    The collector polls the simulator into the database; the API, which polls nothing,
    serves each key its scope from it. Needs the roles (`iotedge edge --role/--store`) and
    PostgreSQL on 127.0.0.1:5432: skipped locally, failed in CI, while either is missing.
    """
    require(_roles_available(), "the `iotedge edge --role/--store` options (issue 15)")
    problem = server_problem()
    require(problem is None, problem or "")
    with scratch_database("iotedge_compose") as database:
        loopback.databases["postgres"] = database
        api_env, collector_env = loopback.environment("api"), loopback.environment("collector")
        assert api_env["IOTEDGE_STORE"] == collector_env["IOTEDGE_STORE"] == database
        assert (api_env["IOTEDGE_ROLE"], collector_env["IOTEDGE_ROLE"]) == ("api", "collector")
        assert api_env["IOTEDGE_PORT"] != collector_env["IOTEDGE_PORT"]
        assert Path(api_env["IOTEDGE_DATA_DIR"]).is_dir()
        keys = dict(item.split("=", 1) for item in api_env["IOTEDGE_API_KEYS"].split(","))
        with (
            start_iotedge(
                loopback.command("collector"),
                log_dir=logs_dir,
                port=int(collector_env["IOTEDGE_PORT"]),
                env=collector_env,
            ) as collector,
            start_iotedge(
                loopback.command("api"), log_dir=logs_dir, port=int(api_env["IOTEDGE_PORT"]), env=api_env
            ) as api,
        ):
            for proc in (collector, api):
                _wait_for(
                    lambda url=proc.url: httpx.get(url + "/readyz", timeout=5).status_code == 200,
                    f"{proc.url}/readyz",
                )

            def _objects(key: str) -> list[str]:
                response = httpx.get(api.url + "/objects", headers={"x-api-key": key}, timeout=5)
                return _object_ids(response.json()) if response.status_code == 200 else []

            for client, expected in _CLIENT_OBJECTS.items():
                _wait_for(
                    lambda key=keys[client], want=expected: _objects(key) == want, f"{client}'s objects"
                )
            denied = httpx.get(api.url + "/objects", headers={"x-api-key": "not-a-key"}, timeout=5)
            assert denied.status_code == 401
