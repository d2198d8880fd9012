"""The package's layering (docs/architecture.md): every module's imports, read with ast (function-
level imports included), go down the layers only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "fashionlab"

ABOVE_MODELS = ("training", "evaluation", "retrieval", "recommend", "sweep", "experiments", "inference",
                "cli", "entrypoint")
#: package (first component under fashionlab) -> packages it must not import.
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "tasks": ("data", "models", *ABOVE_MODELS),
    "data": ABOVE_MODELS,
    "models": ABOVE_MODELS,
    "inference": ("training", "evaluation", "retrieval", "recommend", "sweep", "experiments", "cli",
                  "entrypoint"),
    "retrieval": ("training", "evaluation", "recommend", "sweep", "experiments", "cli", "entrypoint"),
    "training": ("evaluation", "retrieval", "recommend", "sweep", "experiments", "cli", "entrypoint"),
    "evaluation": ("training", "recommend", "sweep", "experiments", "cli", "entrypoint"),
    "recommend": ("training", "evaluation", "sweep", "experiments", "cli", "entrypoint"),
}
#: Known exceptions, each with its reason (an entry here is debt, not a rule).
ALLOWED: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, package: tuple[str, ...] = ()) -> set[str]:
    """Every fashionlab module a file imports (relative to fashionlab), at any depth in the file;
    `package`: the file's package under fashionlab, for relative imports."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(["fashionlab", *package[: len(package) - node.level + 1]])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names.add(module)
            if module == "fashionlab":
                names.update(f"fashionlab.{a.name}" for a in node.names)
    return {n.removeprefix("fashionlab.") for n in names if n.startswith("fashionlab.")}


def violations() -> list[str]:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        name = module_name(path)
        layer = name.split(".")[0]
        package = tuple(name.split(".")[: None if path.name == "__init__.py" else -1])
        for target in sorted(imported(path, package)):
            if target.split(".")[0] in FORBIDDEN.get(layer, ()) and (name, target) not in ALLOWED:
                found.append(f"{name} imports fashionlab.{target}")
    return found


def test_modules_import_only_lower_layers():
    assert violations() == []


def test_the_check_sees_imports_inside_functions(tmp_path):
    source = tmp_path / "mod.py"
    source.write_text("def f():\n    from fashionlab.training.run import train\n"
                      "import fashionlab.retrieval.index\nfrom fashionlab import recommend\n")
    assert imported(source) == {"training.run", "retrieval.index", "recommend"}


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_every_layer_of_the_table_exists(layer):
    assert (SRC / layer).is_dir() or (SRC / f"{layer}.py").is_file()
