"""``python -m tools.dashboards [--check] [DIRECTORY]``: write or check the dashboard JSON files."""

import argparse
import sys
from pathlib import Path

from tools.dashboards import render, render_grafana11, write


def main(argv: list[str] | None = None) -> int:
    """Write the dashboards (default deploy/grafana/dashboards), or with --check compare them."""
    parser = argparse.ArgumentParser(prog="python -m tools.dashboards", description=__doc__)
    parser.add_argument("directory", nargs="?", type=Path, default=Path("deploy/grafana/dashboards"))
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed file differs")
    args = parser.parse_args(argv)
    if not args.check:
        for path in write(args.directory):
            sys.stdout.write(f"wrote {path}\n")
        return 0
    expected = {args.directory / name: text for name, text in render().items()}
    grafana11 = args.directory.parent / "grafana11"
    expected |= {grafana11 / rel: text for rel, text in render_grafana11(args.directory.parent).items()}
    stale = [path for path, text in expected.items() if _read(path) != text]
    for name in stale:
        sys.stderr.write(f"{name} is not what the generator writes; run python -m tools.dashboards\n")
    return 1 if stale else 0


def _read(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.exists() else None


if __name__ == "__main__":
    sys.exit(main())
