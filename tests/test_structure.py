"""The package's shape, read from its own imports: no import circles, and imports point down the layers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("aqa", "data_prep")
# lower number = lower layer; a module may import its own package and anything on a lower layer
LAYERS = {
    "aqa.audio": 0, "aqa.files": 0, "aqa.hub": 0, "aqa.tables": 0, "aqa.correlation": 0,
    "aqa.encoders": 1, "aqa.data": 1, "aqa.metrics": 1,
    "aqa.heads": 2,
    "aqa.losses": 3,
    "aqa.config": 4,
    "aqa.model": 5,
    "aqa.tasks": 6, "aqa.inference": 6,
    "aqa.eval": 7, "data_prep": 7, "aqa.download": 7, "aqa.sweep": 7,
    "aqa.cli": 8,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """The project modules ``path`` imports anywhere in it (functions included), plus the packages whose
    ``__init__`` Python runs on the way (importing ``a.b.c`` runs ``a`` and ``a.b``, unless the importer
    lives inside them)."""
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for target in targets:
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                prefix = ".".join(parts[:i])
                # a module's own ancestor packages are already running when it is imported: no edge
                if prefix in known and prefix != name and not name.startswith(prefix + "."):
                    found.add(prefix)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(path, name, known) for name, path in mods.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def layer(module: str) -> tuple[str, int]:
    for prefix in sorted(LAYERS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return prefix, LAYERS[prefix]
    if module == "aqa":  # the package's facade (`aqa.load`) sits on top, beside the CLI
        return "aqa", LAYERS["aqa.cli"]
    raise KeyError(f"{module} is on no layer: add its package to LAYERS in {__file__}")


def test_cycle_finder_finds_a_planted_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_a_package_that_imports_it():
    found = cycles(graph())
    assert not found, f"import circles: {found}"


def test_imports_point_down_the_layers():
    up = []
    for src, targets in graph().items():
        (pkg, rank) = layer(src)
        for dst in targets:
            dpkg, drank = layer(dst)
            # Python runs the root package for every `aqa.x` import: that edge is no choice, hence exempt, and the
            # root's own imports are deferred into `aqa.load` (test_the_root_package_imports_nothing_at_load)
            if dpkg != pkg and drank >= rank and dst != "aqa":
                up.append(f"{src} -> {dst}")
    assert not up, "imports that do not point down the layers:\n" + "\n".join(sorted(up))


def test_the_root_package_imports_nothing_at_load():
    tree = ast.parse((REPO / "aqa" / "__init__.py").read_text(encoding="utf-8"))
    top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    assert all(isinstance(n, ast.ImportFrom) and n.module in ("__future__", "pathlib", "typing") for n in top), (
        "aqa/__init__.py runs on every `import aqa.x`: keep its project imports inside functions")


@pytest.mark.parametrize("pkg", ["aqa/encoders", "aqa/heads", "aqa/losses", "aqa/metrics"])
def test_only_tasks_and_the_datamodule_import_lightning(pkg):
    for path in sorted((REPO / pkg).rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        assert "import lightning" not in text and "from lightning" not in text, path


def test_test_modules_have_unique_basenames():
    # the test folders are not packages: two test files of one name make pytest refuse to collect the second
    names = [p.name for p in (REPO / "tests").rglob("test_*.py")]
    assert len(names) == len(set(names)), sorted({n for n in names if names.count(n) > 1})


def test_no_prep_recipe_imports_another():
    # recipes share data_prep.recipe / shards / codecs / corpora / ratings, never each other
    from data_prep import RECIPES

    edges = graph()
    recipes = set(RECIPES.values())
    crossed = sorted(f"{r} -> {d}" for r in recipes for d in edges[r] & recipes)
    assert not crossed, crossed
