"""The scale scenario of the benchmark harness: its options, and its quick run on PostgreSQL.

Apart from the other smoke tests so that a test worker of its own runs it (``--dist loadfile``).
"""

from pathlib import Path
from typing import Any

import pytest

from tests.bench.quick import quick, refusals, run_quick
from tests.conftest import require
from tests.pgdb import server_problem

pytestmark = [pytest.mark.integration, pytest.mark.slow]


REFUSED = [
    (["--only", "scale", "--scale-collectors", "0"], "--scale-collectors must be at least 1"),
    (["--only", "scale", "--scale-objects", "15"], "--scale-objects must be a multiple of 10"),
    (["--only", "scale", "--scale-objects", "200000"], "--scale-objects must be a multiple of 10"),
    (["--only", "scale", "--scale-objects", "20", "--scale-collectors", "3"], "3 collectors for 2 clients"),
    (["--only", "api", "--scale-objects", "100"], "need --only scale"),
    (["--scale-part", "fleet"], "need --only scale"),
    (["--only", "pg", "--scale-no-baseline"], "need --only scale"),
    (["--only", "scale", "--scale-part", "both"], "invalid choice: 'both'"),
]


@pytest.fixture(scope="module")
def refused(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """What `bench/run.py --quick` did with each argument list of REFUSED (in one process)."""
    return refusals(tmp_path_factory.mktemp("refused"), [args for args, _ in REFUSED])


@pytest.mark.parametrize("case", range(len(REFUSED)), ids=[message for _, message in REFUSED])
def test_scale_options_are_checked_before_anything_runs(refused: list[dict[str, Any]], case: int) -> None:
    """The scale scenario's sizes are refused with a reason (exit 2), before any process starts."""
    outcome = refused[case]
    assert outcome["code"] == 2, outcome["stderr"][-2000:]
    assert REFUSED[case][1] in outcome["stderr"]
    assert outcome["results"] is False


def test_a_refused_option_exits_2_from_the_command_line(tmp_path: Path) -> None:
    """The same refusal through `python bench/run.py` itself: exit status 2, the reason, no results."""
    done = run_quick(tmp_path, "--only", "scale", "--scale-collectors", "0")
    assert done.returncode == 2, done.stderr[-2000:]
    assert "--scale-collectors must be at least 1" in done.stderr
    assert not (tmp_path / "results.json").exists()


def test_quick_scale_measures_api_processes_and_sharded_collectors(tmp_path: Path) -> None:
    """`--quick --only scale` on the PostgreSQL server: req/s of each API setup, cycles of each collector."""
    problem = server_problem()
    require(problem is None, problem or "")
    scale = quick(tmp_path, "scale", timeout=240)["scale"]
    rows = {row["config"]: row for row in scale["api"]["rows"]}
    assert len(rows) == 3
    assert all(row["rps"] > 0 and row["errors"] == 0 for row in rows.values())
    assert scale["api"]["same_answer"] is True
    fleet = scale["fleet"]
    for run in (fleet["sharded"], fleet["alone"]):
        assert run["complete"] is True
        assert all(row["cycles"] >= 1 for row in run["rows"])
        assert all(row["failed_calls"] == 0 for row in run["rows"])
    assert len(fleet["sharded"]["rows"]) == 2
    assert sum(row["calls_per_cycle"] for row in fleet["alone"]["rows"]) > 0
    assert "## Scaling out on PostgreSQL: collectors" in (tmp_path / "results.md").read_text()
