"""Relative links in README.md and docs/*.md point to files and headings that exist."""

import re
from pathlib import Path

from tools.docs_gen.markdown import anchor

ROOT = Path(__file__).resolve().parents[2]
DOC_FILES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").rglob("*.md"))]
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_FENCED = re.compile(r"^ *```.*?^ *```", flags=re.S | re.M)


def _anchors(path: Path) -> set[str]:
    text = _FENCED.sub("", path.read_text())
    return {anchor(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}


def test_relative_links_resolve():
    """Every relative link names an existing file, and its #anchor an existing heading."""
    broken = []
    for doc in DOC_FILES:
        for target in _LINK.findall(_FENCED.sub("", doc.read_text())):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            file_part, _, fragment = target.partition("#")
            path = (doc.parent / file_part).resolve() if file_part else doc
            if not path.exists():
                broken.append(f"{doc.name}: {target} (no such file)")
            elif fragment and path.suffix == ".md" and fragment not in _anchors(path):
                broken.append(f"{doc.name}: {target} (no such heading)")
    assert not broken, "broken links:\n" + "\n".join(broken)
