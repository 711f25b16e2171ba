"""The package's layering: library modules never import the command-line tools."""

import ast
from pathlib import Path
from typing import List

import pytest
from conftest import ROOT

PACKAGE = ROOT / "yolox_attn"
TOOLS = "yolox_attn.tools"


def module_name(path: Path) -> str:
    """``yolox_attn/data/shapes.py`` -> ``yolox_attn.data.shapes`` (a package is its ``__init__``)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, is_package: bool = False) -> List[str]:
    """Absolute names of what ``source`` (the text of ``module``) imports; ``from X import a``
    gives ``X.a`` too, since ``a`` may be a submodule (``from .. import tools``)."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module
            found.append(origin)
            found += [f"{origin}.{alias.name}" for alias in node.names]
    return found


def imports_tools(names: List[str]) -> List[str]:
    return [n for n in names if n == TOOLS or n.startswith(TOOLS + ".")]


@pytest.mark.parametrize("source, module, bad", [
    ("from .tools.make_shapes import CLASS_NAMES", "yolox_attn.shapes_exp", True),
    ("from ..tools import demo", "yolox_attn.data.shapes", True),
    ("from .. import tools", "yolox_attn.data.shapes", True),
    ("from . import tools", "yolox_attn.exp", True),
    ("import yolox_attn.tools.eval as ev", "yolox_attn.exp", True),
    ("from yolox_attn.tools.eval import pick_device", "yolox_attn.visualize.predictor", True),
    ("def f():\n    from .tools import bench\n", "yolox_attn.exp", True),  # inside a function too
    ("from .data.shapes import CLASS_NAMES", "yolox_attn.shapes_exp", False),
    ("from yolox.tools.eval import make_parser", "yolox_attn.exp", False),  # YOLOX's tools
    ("from . import toolsmith", "yolox_attn.exp", False),
])
def test_import_resolution(source, module, bad):
    assert bool(imports_tools(imported_modules(source, module))) == bad


def test_a_package_init_resolves_relative_to_itself():
    assert imported_modules("from .tools import x", "yolox_attn", is_package=True) == [TOOLS, f"{TOOLS}.x"]


def test_no_library_module_imports_the_tools():
    library = [p for p in PACKAGE.rglob("*.py") if "tools" not in p.relative_to(PACKAGE).parts[:1]]
    assert len(library) > 10
    offenders = {}
    for path in library:
        names = imported_modules(path.read_text(), module_name(path), path.name == "__init__.py")
        if imports_tools(names):
            offenders[str(path.relative_to(ROOT))] = imports_tools(names)
    assert offenders == {}
