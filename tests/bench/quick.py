"""Running `bench/run.py --quick` from the bench smoke tests."""

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import require

ROOT = Path(__file__).resolve().parents[2]


def run_quick(tmp_path: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`bench/run.py --quick --out tmp_path` with ``args``, whatever its exit status."""
    command = [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--out", str(tmp_path), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False)


def quick(tmp_path: Path, *scenarios: str, timeout: float, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """`bench/run.py --quick` on ``scenarios`` and ``extra`` options into ``tmp_path``: its results.json."""
    require(shutil.which("wrk") is not None, "wrk (Debian package wrk) is not installed")
    only = [arg for scenario in scenarios for arg in ("--only", scenario)]
    done = run_quick(tmp_path, *only, *extra, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    results: dict[str, Any] = json.loads((tmp_path / "results.json").read_text())
    return results


def refusals(tmp_path: Path, cases: list[list[str]]) -> list[dict[str, Any]]:
    """What `bench/run.py --quick` does with each of ``cases`` (see tests/bench/refusals.py)."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench.refusals", str(tmp_path)],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    outcomes: list[dict[str, Any]] = json.loads(done.stdout)
    return outcomes
