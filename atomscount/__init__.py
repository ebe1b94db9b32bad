"""atomscount: quantitative atomic-resolution HAADF-STEM.

Column fitting, abTEM simulation libraries, atom counting, core-shell search and
atom-tracing tomography.
"""

from ._version import __version__

#: Subpackages and modules loaded on first attribute access (``ac.library``), so that
#: ``import atomscount`` stays quick and does not import abTEM or ASE.
_SUBMODULES = {"columns", "counting", "library", "plot", "io", "image", "cli", "demo", "coreshell", "tomo", "lattice",
               "elemental", "ltem"}  # fmt: skip
#: Names exported from a lazily loaded subpackage: name -> subpackage.
#: The column stage's names too: ``atomscount --help`` and an argument error then import no numerical code.
_LAZY = {**dict.fromkeys(("ColumnCRLB", "ColumnDetection", "ColumnFit", "ColumnModel", "add_columns",
                          "add_poisson_noise", "crlb", "detect_columns", "estimate_spacing", "find_columns",
                          "fit_columns", "remove_columns", "voronoi_scs"), "columns"),
         "HAADFImage": "image", "normalise": "image", "read_image": "io",
         "count_atoms": "counting", "ColumnCounts": "counting", "load_default": "library",
         "ScsLibrary": "library", "search_core_shell": "coreshell", "simulate_tilt_series": "tomo",
         "reconstruct": "tomo", "trace_atoms": "tomo", "refine_atoms": "tomo", "classify_atoms": "tomo"}  # fmt: skip


def __getattr__(name):
    import importlib

    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'atomscount' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _SUBMODULES | set(_LAZY))


__all__ = [
    "ColumnCounts",
    "ScsLibrary",
    "count_atoms",
    "load_default",
    "search_core_shell",
    "simulate_tilt_series",
    "reconstruct",
    "trace_atoms",
    "refine_atoms",
    "classify_atoms",
    "ColumnCRLB",
    "ColumnDetection",
    "ColumnFit",
    "ColumnModel",
    "HAADFImage",
    "__version__",
    "add_columns",
    "add_poisson_noise",
    "crlb",
    "detect_columns",
    "estimate_spacing",
    "find_columns",
    "fit_columns",
    "normalise",
    "read_image",
    "remove_columns",
    "voronoi_scs",
]
