"""Refresh the vendored front-end files from the npm registry (``make assets``).

Each entry names an npm package, its pinned version and the files taken from its
tarball. ``npm pack`` fetches the tarball (no Node.js project, no node_modules); the files
are copied into place and each destination folder gets a ``MANIFEST.json`` recording the
package, version, licence and sha256 of every file. ``--check`` only verifies the files on
disk against their manifests (what the tests do).
"""

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, kw_only=True)
class Vendored:
    """Files of one npm package copied into one folder of the repository."""

    package: str
    version: str
    licence: str
    folder: str
    files: dict[str, str]  # path inside the tarball -> file name in ``folder``


VENDORED = (
    Vendored(
        package="uplot",
        version="1.6.32",
        licence="MIT",
        folder="src/iotedge/edge/ui/static/vendor",
        files={
            "package/dist/uPlot.iife.min.js": "uPlot.iife.min.js",
            "package/dist/uPlot.min.css": "uPlot.min.css",
            "package/LICENSE": "uPlot.LICENSE",
        },
    ),
    Vendored(
        package="axe-core",
        version="4.14.1",
        licence="MPL-2.0",
        folder="tests/browser/vendor",
        files={"package/axe.min.js": "axe.min.js", "package/LICENSE": "axe-core.LICENSE"},
    ),
)


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fetch(entry: Vendored, work: Path) -> None:
    subprocess.run(  # noqa: S603 - a fixed command on our own pinned names
        ["npm", "pack", f"{entry.package}@{entry.version}", "--pack-destination", str(work)],  # noqa: S607
        check=True,
        capture_output=True,
    )
    tarball = next(work.glob("*.tgz"))
    with tarfile.open(tarball) as archive:
        for inner, name in entry.files.items():
            member = archive.extractfile(inner)
            if member is None:
                raise SystemExit(f"{entry.package}@{entry.version} has no {inner}")
            target = ROOT / entry.folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("wb") as out:
                shutil.copyfileobj(member, out)


def _manifests() -> dict[str, list[dict[str, str]]]:
    folders: dict[str, list[dict[str, str]]] = {}
    for entry in VENDORED:
        for name in entry.files.values():
            folders.setdefault(entry.folder, []).append(
                {
                    "file": name,
                    "package": entry.package,
                    "version": entry.version,
                    "licence": entry.licence,
                    "sha256": sha256(ROOT / entry.folder / name),
                }
            )
    return folders


def check() -> list[str]:
    """Mismatches between the files on disk and their manifests (empty when all is well)."""
    problems = []
    for folder in {entry.folder for entry in VENDORED}:
        manifest = json.loads((ROOT / folder / "MANIFEST.json").read_text())
        for item in manifest["files"]:
            path = ROOT / folder / item["file"]
            if not path.exists() or sha256(path) != item["sha256"]:
                problems.append(f"{path.relative_to(ROOT)} does not match its manifest")
    return problems


def main() -> None:
    """Fetch and record, or only check."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="verify the files against the manifests")
    args = parser.parse_args()
    if not args.check:
        for entry in VENDORED:
            with tempfile.TemporaryDirectory() as work:
                _fetch(entry, Path(work))
        for folder, files in _manifests().items():
            note = "Vendored third-party files; refresh with `make assets` (tools/vendor_assets.py)."
            body = {"note": note, "files": files}
            (ROOT / folder / "MANIFEST.json").write_text(json.dumps(body, indent=2) + "\n")
    problems = check()
    for problem in problems:
        print(problem, file=sys.stderr)  # noqa: T201
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
