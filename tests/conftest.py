"""Shared fixtures: a real simulator process on loopback, per-test directories."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.procs import Proc, start_iotedge

# With IOTEDGE_REQUIRE_ALL=1 (set by .ci/run) a test whose real component is missing
# fails instead of skipping, so nothing is skipped silently in CI.
REQUIRE_ALL = os.environ.get("IOTEDGE_REQUIRE_ALL") == "1"


def require(condition: bool, why: str) -> None:
    """Skip locally, fail in CI, when a real component a test needs is missing."""
    if condition:
        return
    if REQUIRE_ALL:
        pytest.fail(f"required component missing: {why}")
    pytest.skip(why)


@pytest.fixture(scope="session")
def logs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where subprocess logs go for the whole session."""
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def sim(logs_dir: Path) -> Iterator[Proc]:
    """A real simulator with the default fleet and seed 42, shared by the session."""
    with start_iotedge(["sim", "--seed", "42"], log_dir=logs_dir) as proc:
        yield proc
