"""The benchmark harness runs end to end in its quick form (no timing is asserted)."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


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
