"""The top-level API: lazy subpackages, exports, and declared dependencies."""

import ast
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_subpackages_load_on_attribute_access_in_a_fresh_interpreter():
    code = (
        "import sys, atomscount as ac; assert 'abtem' not in sys.modules; "
        "print(ac.library.load_default.__name__, ac.counting.count_atoms is ac.count_atoms, "
        "ac.ColumnCounts.__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["load_default", "True", "ColumnCounts"]


def test_unknown_attribute_is_an_attribute_error():
    import atomscount

    with pytest.raises(AttributeError, match="has no attribute 'nonsense'"):
        atomscount.nonsense  # noqa: B018
    assert {"library", "counting", "count_atoms"} <= set(dir(atomscount))


def test_every_third_party_import_is_a_declared_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def _names(requirements):
        return {d.split(">")[0].split("=")[0].split("[")[0].strip().lower() for d in requirements}

    default = _names(project["dependencies"])
    # a stage may import what its own optional extra declares (atomscount[ltem] for atomscount/ltem/)
    extras = {stage: _names(reqs) for stage, reqs in project["optional-dependencies"].items()}
    # the elemental stage's denoiser: training in atomscount[learn], the BM3D baseline in atomscount[bm3d]
    extras["elemental"] = extras.get("learn", set()) | extras.get("bm3d", set())
    dists = packages_distributions()
    stdlib = set(sys.stdlib_module_names)
    missing = set()
    for path in (ROOT / "atomscount").rglob("*.py"):
        stage = path.relative_to(ROOT / "atomscount").parts[0]
        names = default | extras.get(stage, set())
        for node in ast.walk(ast.parse(path.read_text())):
            mods = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods = [node.module]
            for mod in mods:
                top = mod.split(".")[0]
                if top in stdlib or top == "atomscount":
                    continue
                # dask.distributed lives in the "distributed" distribution
                full = "distributed" if mod.startswith("dask.distributed") else top
                candidates = {d.lower() for d in dists.get(full, [full])}
                if not candidates & names:
                    missing.add(f"{mod} ({path.relative_to(ROOT)})")
    assert not missing, f"imported but not declared in pyproject.toml: {sorted(missing)}"
