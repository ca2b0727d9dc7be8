"""Build every generated documentation file, in memory or on disk."""

from pathlib import Path
from typing import Any

from tools.docs_gen.api import render_api
from tools.docs_gen.configuration import render_configuration
from tools.docs_gen.markdown import replace_region
from tools.docs_gen.modules import render_module_map

__all__ = ["DOCS_DIR", "generated_files", "openapi_specs", "write_generated"]

DOCS_DIR = Path(__file__).resolve().parents[2] / "docs"
"""docs/ of the source checkout this package is installed from (editable install)."""


def openapi_specs() -> tuple[dict[str, Any], dict[str, Any]]:
    """The OpenAPI schemas of the simulator and the edge, built with default settings."""
    from iotedge.config import load_edge_settings, load_sim_settings
    from iotedge.edge.app import create_app as create_edge
    from iotedge.sim.app import create_app as create_sim

    sim = create_sim(load_sim_settings({})).openapi()
    edge = create_edge(load_edge_settings({})).openapi()
    return sim, edge


def generated_files(docs_dir: Path = DOCS_DIR) -> dict[Path, str]:
    """What each generated file must contain (whole files, or files with generated regions)."""
    architecture = docs_dir / "architecture.md"
    return {
        docs_dir / "api.md": render_api(*openapi_specs()),
        docs_dir / "configuration.md": render_configuration(),
        architecture: replace_region(architecture.read_text(), "modules", render_module_map()),
    }


def write_generated(docs_dir: Path = DOCS_DIR) -> list[Path]:
    """Write every generated file that changed; returns the ones written."""
    written = []
    for path, text in generated_files(docs_dir).items():
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            written.append(path)
    return written
