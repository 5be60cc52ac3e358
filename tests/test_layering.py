"""The package layering: a package imports only packages below it (or itself).

Bottom to top: core, data, embeddings, models, evaluation, train, serving, cli. ``allocator``
is a leaf module every layer may use. Imports are read from the source (function-level
imports included), so a lazy import against the flow is caught too.
"""

from __future__ import annotations

import ast
from pathlib import Path

LAYERS = ["core", "data", "embeddings", "models", "evaluation", "train", "serving", "cli"]
LEAVES = {"allocator"}
ROOT = Path(__file__).resolve().parents[1] / "recsys"


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found += [(node.lineno, n) for n in names if n == "recsys" or n.startswith("recsys.")]
    return found


def test_every_module_belongs_to_a_layer():
    packages = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    modules = {p.stem for p in ROOT.glob("*.py") if p.stem != "__init__"}
    assert packages <= set(LAYERS), f"packages outside the layering: {packages - set(LAYERS)}"
    assert modules <= LEAVES, f"top-level modules outside the layering: {modules - LEAVES}"


def test_no_package_imports_a_package_above_it():
    violations = []
    for path in sorted(ROOT.rglob("*.py")):
        own = path.relative_to(ROOT).parts[0]
        if own not in LAYERS:
            continue
        for line, name in _imports(path):
            target = name.split(".")[1] if "." in name else ""
            if target in LEAVES:
                continue
            if target not in LAYERS or LAYERS.index(target) > LAYERS.index(own):
                violations.append(f"{path.relative_to(ROOT.parent)}:{line} imports {name}")
    assert not violations, "imports against the layering:\n" + "\n".join(violations)
