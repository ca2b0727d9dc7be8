"""Documentation generators: API and configuration references, module map, example outputs."""

from iotedge.docs_gen.api import render_api
from iotedge.docs_gen.configuration import render_configuration
from iotedge.docs_gen.generate import DOCS_DIR, generated_files, write_generated
from iotedge.docs_gen.modules import render_module_map

__all__ = [
    "DOCS_DIR",
    "generated_files",
    "render_api",
    "render_configuration",
    "render_module_map",
    "write_generated",
]
