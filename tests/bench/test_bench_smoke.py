"""The benchmark harness runs end to end in its quick form (no timing is asserted)."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.bench.quick import ROOT, quick as _quick
from tests.conftest import require

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_quick_ceiling_run_writes_a_table_with_numbers(tmp_path: Path) -> None:
    """`bench/run.py --quick --only ceiling` exits 0 and reports req/s and a ratio."""
    require(shutil.which("wrk") is not None, "wrk (Debian package wrk) is not installed")
    command = [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--only", "ceiling"]
    done = subprocess.run(
        [*command, "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    table = (tmp_path / "results.md").read_text()
    for name in ("simulator", "ceiling"):
        row = re.search(rf"^\| {name} \| `[^`]+` \| ([\d,.]+) \|", table, re.MULTILINE)
        assert row is not None, table
        assert float(row.group(1).replace(",", "")) > 0
    assert re.search(r"Simulator / ceiling: \d+\.\d\d", table)
    assert (tmp_path / "bench.png").read_bytes().startswith(b"\x89PNG")


def test_quick_load_test_sees_no_errors_and_a_live_edge(tmp_path: Path) -> None:
    """The short load test (about 10 s of mixed keyed traffic) gets only 2xx answers."""
    load = _quick(tmp_path, "load", timeout=90)["load"]
    assert load["requests"] > 0
    assert load["non2xx"] == 0, load["by_status"]
    assert load["socket_errors"] == 0
    assert load["edge_alive"] is True
    assert len(load["rss_series"]) >= 2
    assert "## Load test" in (tmp_path / "results.md").read_text()


def test_quick_store_scenarios_report_rates_and_query_times(tmp_path: Path) -> None:
    """Ingest and history in their quick form store what they claim and answer every query."""
    results = _quick(tmp_path, "ingest", "history", timeout=90)
    for row in results["ingest"]:
        assert row["readings_per_round"] > 0
        assert row["readings_per_s"] > 0
    day = next(row for row in results["history"] if row["history"] == "1 d")
    assert day["rows"] >= 2 * 17_280
    assert day["window_count"] >= 17_280 - 2  # a day of 5 s readings, give or take its two edges
    assert day["errors"] == 0


def test_quick_versus_compares_a_commit_with_this_tree(tmp_path: Path) -> None:
    """`--only versus --before HEAD` runs HEAD's edge beside this tree's and reports both."""
    results = _quick_versus(tmp_path, "--before", "HEAD")
    versus = results["versus"]
    both = {"ceiling", "before", "after", "before /client_statistics", "after /client_statistics"}
    assert set(versus["api"]) == both
    assert all(row["rps"] > 0 and row["errors"] == 0 for row in versus["api"].values())
    assert all(row["cycles"] >= 1 for row in versus["fleet"].values())
    assert "## Before (HEAD = " in (tmp_path / "results.md").read_text()


def test_versus_without_a_ref_is_refused(tmp_path: Path) -> None:
    """The versus scenario says it needs --before instead of guessing a baseline."""
    command = [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--only", "versus"]
    done = subprocess.run(
        [*command, "--out", str(tmp_path)], capture_output=True, text=True, timeout=60, cwd=ROOT, check=False
    )
    assert done.returncode == 2
    assert "needs --before REF" in done.stderr


def _quick_versus(tmp_path: Path, *extra: str) -> dict[str, Any]:
    require(shutil.which("wrk") is not None, "wrk (Debian package wrk) is not installed")
    command = [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--only", "versus", *extra]
    done = subprocess.run(
        [*command, "--out", str(tmp_path)], capture_output=True, text=True, timeout=240, cwd=ROOT, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results: dict[str, Any] = json.loads((tmp_path / "results.json").read_text())
    return results


def test_quick_windows_scenario_compares_raw_and_rollup_statistics(tmp_path: Path) -> None:
    """The windows scenario writes its history, gets the same counts both ways and times both."""
    data = _quick(tmp_path, "windows", timeout=120)["windows"]
    assert data["history_rows"] >= 10 * 2 * 17_280 - 20
    assert [row["window"] for row in data["rows"]] == ["1 h", "1 d"]
    for row in data["rows"]:
        assert row["readings"] > 0
        assert row["summary_raw_p50_ms"] > 0
        assert row["summary_rollup_p50_ms"] > 0
    assert data["ingest"]["raw"] > 0
    assert data["ingest"]["rollup"] > 0
    assert "## Window statistics" in (tmp_path / "results.md").read_text()
