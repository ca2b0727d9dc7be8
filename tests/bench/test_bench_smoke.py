"""The benchmark harness runs end to end in its quick form (no timing is asserted).

The scenarios here run in one `bench/run.py --quick` (each run of it spends seconds starting
and drawing its chart); each test checks its own scenario's part of that run's results.
"""

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.bench.quick import quick

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@dataclass(frozen=True)
class Run:
    """One quick run of several scenarios: its results.json and results.md, and where they are."""

    results: dict[str, Any]
    markdown: str
    out: Path


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """`bench/run.py --quick` on the ceiling, load, ingest, history, windows and during scenarios."""
    out = tmp_path_factory.mktemp("bench-quick")
    results = quick(out, "ceiling", "load", "ingest", "history", "windows", "during", timeout=300)
    return Run(results, (out / "results.md").read_text(), out)


def test_quick_ceiling_run_writes_a_table_with_numbers(run: Run) -> None:
    """The quick ceiling scenario reports req/s of both servers and their ratio, and the chart is drawn."""
    table = run.markdown
    for name in ("simulator", "ceiling"):
        row = re.search(rf"^\| {name} \| `[^`]+` \| ([\d,.]+) \|", table, re.MULTILINE)
        assert row is not None, table
        assert float(row.group(1).replace(",", "")) > 0
    assert re.search(r"Simulator / ceiling: \d+\.\d\d", table)
    assert (run.out / "bench.png").read_bytes().startswith(b"\x89PNG")


def test_quick_load_test_sees_no_errors_and_a_live_edge(run: Run) -> None:
    """The short load test (about 10 s of mixed keyed traffic) gets only 2xx answers."""
    load = run.results["load"]
    assert load["requests"] > 0
    assert load["non2xx"] == 0, load["by_status"]
    assert load["socket_errors"] == 0
    assert load["edge_alive"] is True
    assert len(load["rss_series"]) >= 2
    assert "## Load test" in run.markdown


def test_quick_store_scenarios_report_rates_and_query_times(run: Run) -> None:
    """Ingest and history in their quick form store what they claim and answer every query."""
    results = run.results
    for row in results["ingest"]:
        assert row["readings_per_round"] > 0
        assert row["readings_per_s"] > 0
    day = next(row for row in results["history"] if row["history"] == "1 d")
    assert day["rows"] >= 2 * 17_280
    assert day["window_count"] >= 17_280 - 2  # a day of 5 s readings, give or take its two edges
    assert day["errors"] == 0


def test_quick_windows_scenario_compares_raw_and_rollup_statistics(run: Run) -> None:
    """The windows scenario writes its history, gets the same counts both ways and times both."""
    data = run.results["windows"]
    assert data["history_rows"] >= 10 * 2 * 17_280 - 20
    assert [row["window"] for row in data["rows"]] == ["1 h", "1 d"]
    for row in data["rows"]:
        assert row["readings"] > 0
        assert row["summary_raw_p50_ms"] > 0
        assert row["summary_rollup_p50_ms"] > 0
    assert data["ingest"]["raw"] > 0
    assert data["ingest"]["rollup"] > 0
    assert "## Window statistics" in run.markdown


def test_quick_during_scenario_times_answers_in_both_phases(run: Run) -> None:
    """The edge answered through its first cycle and its steady cycles, and the table says so."""
    [row] = run.results["during"]
    assert row["edge"] == "this tree" and row["objects"] == 1_000
    assert row["first_cycle_s"] is not None and row["first_cycle_s"] > 0
    assert row["steady"]["n"] > 0 and row["steady"]["p50_ms"] > 0
    assert row["first cycle"]["n"] >= 0  # a fast first cycle may end before the first probe
    assert "## The API while the collector polls" in run.markdown
