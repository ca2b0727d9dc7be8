"""The module map of docs/architecture.md: every module of the package and its one job."""

import importlib
import pkgutil

import iotedge
from tools.docs_gen.markdown import code, table

__all__ = ["module_docs", "render_module_map"]


def module_docs() -> dict[str, str]:
    """Every importable module of iotedge (``__main__`` excluded) and its docstring's first line."""
    found: dict[str, str] = {}
    names = [iotedge.__name__]
    names += [info.name for info in pkgutil.walk_packages(iotedge.__path__, iotedge.__name__ + ".")]
    for name in sorted(names):
        if name.rsplit(".", 1)[-1] == "__main__":
            continue  # importing it would run the command line
        module = importlib.import_module(name)
        found[name] = (module.__doc__ or "").strip().split("\n")[0].replace("``", "`")
    return found


def _path(name: str) -> str:
    module = importlib.import_module(name)
    is_package = hasattr(module, "__path__")
    relative = name.replace(".", "/") + ("/__init__.py" if is_package else ".py")
    return "src/" + relative


def render_module_map() -> str:
    """A table of every module: its file and its one-line docstring."""
    rows = [[code(_path(name)), doc] for name, doc in module_docs().items()]
    return table(["Module", "Its one job"], rows)
