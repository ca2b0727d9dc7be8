"""docs/architecture.md: its module map is generated, its diagram names real modules."""

import importlib
import re

from tools.docs_gen.generate import DOCS_DIR, generated_files
from tools.docs_gen.modules import module_docs

ARCHITECTURE_MD = DOCS_DIR / "architecture.md"


def test_module_map_is_up_to_date():
    """The module table lists every module of the package with its docstring's first line."""
    expected = generated_files()[ARCHITECTURE_MD]
    assert ARCHITECTURE_MD.read_text() == expected, (
        "docs/architecture.md's module map is out of date: run `make docs` and commit it"
    )


def test_diagram_names_existing_modules():
    """Every module path written in the Mermaid diagram (e.g. edge/collector.py) exists."""
    text = ARCHITECTURE_MD.read_text()
    diagrams = re.findall(r"```mermaid\n(.*?)```", text, flags=re.S)
    assert diagrams, "docs/architecture.md has no Mermaid diagram"
    named = set(re.findall(r"\b([a-z_]+(?:/[a-z_]+)*\.py)\b", "\n".join(diagrams)))
    known = {name.removeprefix("iotedge.").replace(".", "/") + ".py" for name in module_docs()}
    known |= {path.replace("/__init__.py", ".py") for path in known}
    assert named, "the diagram names no modules"
    assert named <= known, f"the diagram names modules that do not exist: {sorted(named - known)}"


def test_diagram_shows_every_module():
    """Each module of iotedge, sim/ and edge/ is a box of the diagram; deeper ones by their folder."""
    text = "\n".join(re.findall(r"```mermaid\n(.*?)```", ARCHITECTURE_MD.read_text(), flags=re.S))
    missing = []
    for name in module_docs():
        parts = name.split(".")[1:]
        if not parts or hasattr(importlib.import_module(name), "__path__"):
            continue  # packages are shown by their modules
        direct = len(parts) == 1 or (len(parts) == 2 and parts[0] in ("sim", "edge"))
        expected = "/".join(parts) + ".py" if direct else "/".join(parts[:-1]) + "/"
        if expected not in text:
            missing.append(expected)
    assert not missing, f"add these modules to the diagram in docs/architecture.md: {sorted(set(missing))}"
