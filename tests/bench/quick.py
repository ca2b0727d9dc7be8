"""Running `bench/run.py --quick` from the bench smoke tests."""

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import require

ROOT = Path(__file__).resolve().parents[2]


def quick(tmp_path: Path, *scenarios: str, timeout: float) -> dict[str, Any]:
    """Run `bench/run.py --quick` on ``scenarios`` into ``tmp_path``; its results.json."""
    require(shutil.which("wrk") is not None, "wrk (Debian package wrk) is not installed")
    command = [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--out", str(tmp_path)]
    for scenario in scenarios:
        command += ["--only", scenario]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    results: dict[str, Any] = json.loads((tmp_path / "results.json").read_text())
    return results
