"""The versus scenario of the benchmark harness (this tree's edge against a commit's), quick form.

A file of its own, the heaviest bench smoke test, so that ``--dist loadfile`` gives it a
test worker while the other bench smoke tests run on another.
"""

from pathlib import Path

import pytest

from tests.bench.quick import quick, run_quick

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_quick_versus_compares_a_commit_with_this_tree(tmp_path: Path) -> None:
    """`--only versus --before HEAD` runs HEAD's edge beside this tree's and reports both."""
    versus = quick(tmp_path, "versus", timeout=240, extra=("--before", "HEAD"))["versus"]
    both = {"ceiling", "before", "after", "before /client_statistics", "after /client_statistics"}
    assert set(versus["api"]) == both
    assert all(row["rps"] > 0 and row["errors"] == 0 for row in versus["api"].values())
    assert set(versus["fleet"]) == {"before", "after"}
    assert all(row["cycles"] >= 1 for row in versus["fleet"].values())
    assert "## Before (HEAD = " in (tmp_path / "results.md").read_text()


def test_versus_without_a_ref_is_refused(tmp_path: Path) -> None:
    """The versus scenario says it needs --before instead of guessing a baseline."""
    done = run_quick(tmp_path, "--only", "versus")
    assert done.returncode == 2
    assert "needs --before REF" in done.stderr
