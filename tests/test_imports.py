"""The import rules of STYLE.md, read from the modules' source with ``ast``.

1. Each module imports (within audiogmm) only the modules below it in the table.
2. ``audiogmm.mixture`` never imports librosa, click, scikit-learn, joblib or dask.
3. No module imports a ``_private`` name of another module outside its own subpackage (neither
   ``from .x import _y`` nor ``x._y`` on an imported module).
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "audiogmm"

_BASE = {"exceptions", "_validation"}
#: module -> the audiogmm modules it may import (a subpackage counts as one name).
ALLOWED = {
    "exceptions": set(),
    "_validation": {"exceptions"},
    "_files": {"exceptions", "_validation"},
    "_dask": _BASE,
    "audio": _BASE,
    "dataset": _BASE | {"_files", "audio"},
    "features": _BASE | {"_files", "audio"},
    "cache": _BASE | {"_files", "audio", "dataset", "features"},
    "extraction": _BASE | {"_files", "_dask", "audio", "dataset", "features", "cache"},
    "mixture": _BASE | {"mixture", "_files"},
    "calibration": _BASE,
    "classifier": _BASE | {"mixture", "calibration"},
    "ubm": _BASE | {"mixture", "calibration", "classifier"},
    "recipes": _BASE | {"classifier", "ubm", "features"},
    "persistence": _BASE | {"recipes", "features", "_files"},
    "evaluation": _BASE | {"dataset", "features", "calibration", "audio"},
    "cli": _BASE | {"pipeline", "persistence", "recipes", "features", "sorting", "dataset", "demo"},
}
_LOWER = set(ALLOWED) - {"cli"}
for _top in ("sorting", "demo"):
    ALLOWED[_top] = _LOWER | {"_files"}
ALLOWED["pipeline"] = _LOWER | {"_files", "sorting"}
ALLOWED["__init__"] = set(ALLOWED) | {"pipeline", "sorting", "demo"}
ALLOWED["__main__"] = {"cli"}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        yield ".".join(rel.parts), path


def _imports(path, dotted):
    """``(target module, imported name or None, line)`` of every audiogmm import in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = ["audiogmm", *dotted.split(".")]
    package = here[:-1] if path.name != "__init__.py" else here[:-1]
    if path.name == "__init__.py":
        package = here[:-1] if dotted != "__init__" else ["audiogmm"]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                mod = base + (node.module.split(".") if node.module else [])
            else:
                mod = node.module.split(".")
            if mod[0] != "audiogmm":
                continue
            for alias in node.names:
                if len(mod) == 1:  # from audiogmm import x: x is a module
                    out.append((["audiogmm", alias.name], None, node.lineno))
                else:
                    out.append((mod, alias.name, node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "audiogmm":
                    out.append((alias.name.split("."), None, node.lineno))
    return tree, out


def _top(parts):
    """The table's name for a module path: its first component below audiogmm."""
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_module_is_in_the_table():
    missing = sorted({_top(["audiogmm", *d.split(".")]) for d, _ in _modules()} - set(ALLOWED))
    assert not missing, f"add these modules to STYLE.md's table and ALLOWED: {missing}"


@pytest.mark.parametrize("dotted, path", list(_modules()), ids=[d for d, _ in _modules()])
def test_imports_flow_one_way(dotted, path):
    me = _top(["audiogmm", *dotted.split(".")])
    _, imports = _imports(path, dotted)
    bad = []
    for mod, _, line in imports:
        target = _top(mod)
        if target != me and target not in ALLOWED[me]:
            bad.append(f"{path.name}:{line} imports audiogmm.{'.'.join(mod[1:])}")
    assert not bad, f"audiogmm.{dotted} may import only {sorted(ALLOWED[me])}: " + "; ".join(bad)


@pytest.mark.parametrize("dotted, path", list(_modules()), ids=[d for d, _ in _modules()])
def test_no_private_names_across_modules(dotted, path):
    me = ["audiogmm", *dotted.split(".")]
    tree, imports = _imports(path, dotted)
    bad = []
    aliases = {}
    for mod, name, line in imports:
        same_package = _top(mod) == _top(me) and len(me) > 2  # inside one subpackage
        if name is not None and name.startswith("_") and not name.startswith("__") and not same_package:
            bad.append(f"line {line}: from audiogmm.{'.'.join(mod[1:])} import {name}")
    for node in ast.walk(tree):  # module aliases: `from . import evaluation as _evaluation`
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("audiogmm")):
            for alias in node.names:
                aliases[alias.asname or alias.name] = alias.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_") and not node.attr.startswith("__")
                and not (aliases[node.value.id] == _top(me))):
            target = aliases[node.value.id]
            if (PACKAGE / f"{target}.py").exists() or (PACKAGE / target).is_dir():
                bad.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    assert not bad, f"audiogmm.{dotted} uses private names of other modules: " + "; ".join(bad)


def _loaded_after_import(module, heavy):
    """The modules of ``heavy`` that ``import module`` loads, in a fresh interpreter."""
    code = f"import sys, {module}; print(','.join(m for m in {tuple(heavy)!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parent)
    return out.stdout.strip()


def test_mixture_imports_no_heavy_library():
    assert _loaded_after_import("audiogmm.mixture", ("librosa", "click", "sklearn", "joblib", "dask",
                                                     "distributed")) == ""


def test_import_audiogmm_is_light():
    assert _loaded_after_import("audiogmm", ("librosa", "sklearn", "dask", "distributed", "numba")) == ""
