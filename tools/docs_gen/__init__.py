"""Documentation generators: API and configuration references, module map, example outputs."""

from tools.docs_gen.api import render_api
from tools.docs_gen.configuration import render_configuration
from tools.docs_gen.generate import DOCS_DIR, generated_files, write_generated
from tools.docs_gen.modules import render_module_map

__all__ = [
    "DOCS_DIR",
    "generated_files",
    "render_api",
    "render_configuration",
    "render_module_map",
    "write_generated",
]
