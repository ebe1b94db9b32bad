"""The package's import structure: no module imports the package root, no two modules import each other."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "atomscount"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set:
    """The atomscount modules ``path`` imports, at module level or inside functions, resolved to dotted names."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "atomscount")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "atomscount":
                continue
            out.add(mod)
            # "from . import x" or "from .pkg import mod": the names may be modules too
            out.update(f"{mod}.{a.name}" for a in node.names)
    return out


def _graph():
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {m: {i for i in _imports(p) if i in modules} for m, p in modules.items()}


def test_no_module_imports_the_package_root():
    offenders = sorted(m for m, deps in _graph().items() if "atomscount" in deps and m != "atomscount"
                       and not m.startswith("atomscount.__main__"))  # fmt: skip
    assert offenders == []


def test_no_two_modules_import_each_other():
    graph = _graph()
    pairs = sorted({tuple(sorted((a, b))) for a, deps in graph.items() for b in deps
                    if a != b and a in graph.get(b, ())
                    # a package's __init__ re-exports its modules: that direction is not a circle
                    and not (b.startswith(a + ".") or a.startswith(b + "."))})  # fmt: skip
    assert pairs == []


def test_no_module_over_800_lines():
    long = sorted((p.relative_to(PACKAGE).as_posix(), n) for p in PACKAGE.rglob("*.py")
                  if (n := len(p.read_text().splitlines())) > 800)  # fmt: skip
    assert long == []


def test_every_import_inside_the_package_resolves():
    # function-level imports run only when their function does: check them all here
    import importlib

    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = _module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.ImportFrom) and node.level):
                continue
            base = package.split(".")
            mod = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
            try:
                target = importlib.import_module(mod)
            except ImportError:
                missing.append(f"{name}: {mod}")
                continue
            for alias in node.names:
                if not hasattr(target, alias.name):
                    try:
                        importlib.import_module(f"{mod}.{alias.name}")
                    except ImportError:
                        missing.append(f"{name}: {mod}.{alias.name}")
    assert missing == []
