"""`bench/run.py --quick` with each of several argument lists, in one process.

The option tests expect each list to be refused (exit 2) before anything runs; a
process of its own for each would spend most of its time importing the harness.
``python -m tests.bench.refusals OUT`` reads a JSON list of argument lists on stdin and
prints, for each, its exit status, what it wrote on stderr and whether it wrote a
results.json (under ``OUT/<index>``).
"""

import contextlib
import importlib
import io
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    """Run every argument list read on stdin; print the outcomes as JSON."""
    out = Path(sys.argv[1])
    sys.path.insert(0, str(ROOT / "bench"))  # as `python bench/run.py` finds its modules
    run = importlib.import_module("run")
    outcomes = []
    for index, args in enumerate(json.load(sys.stdin)):
        where = out / str(index)
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            try:
                code = run.main(["--quick", "--out", str(where), *args])
            except SystemExit as exc:
                code = exc.code
        outcomes.append(
            {"code": code, "stderr": stderr.getvalue(), "results": (where / "results.json").exists()}
        )
    sys.stdout.write(json.dumps(outcomes) + "\n")


if __name__ == "__main__":
    main()
