"""First-run compilation of the numba kernels, with a progress bar instead of a silent minute.

The kernels are compiled with ``cache=True``: the first run on a machine compiles
them (about a minute on two cores) and later runs load them from the cache.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
from tqdm.auto import tqdm

__all__ = ["kernels_compiled", "compile_kernels"]


def _dispatchers():
    from numba.core.registry import CPUDispatcher

    from .columns import _kernels
    from .counting import _em

    # the kernels called from Python; helpers (leading underscore) compile into them
    return [v for mod in (_kernels, _em) for name, v in vars(mod).items()
            if isinstance(v, CPUDispatcher) and not name.startswith("_")]  # fmt: skip


def kernels_compiled() -> bool:
    """Whether every kernel has an entry in numba's on-disk cache (True when this cannot be told)."""
    try:
        return all(os.path.exists(fn._cache._cache_file._index_path) for fn in _dispatchers())
    except (AttributeError, ImportError):  # numba's cache layout is private: no notice rather than a wrong one
        return True


def compile_kernels(*, progress: bool = True) -> None:
    """Compile every kernel once on tiny inputs, one step of the bar per fit mode."""
    from .columns.fit import fit_columns
    from .columns.model import ColumnModel
    from .counting import count_atoms
    from .image import HAADFImage

    pos = [[1.2, 1.2], [2.8, 1.3], [2.0, 2.8]]
    img = HAADFImage(ColumnModel((40, 40), 0.1, pos, [0.3, 0.4, 0.5], 0.4, background=(0.02,)).image(), 0.1)
    steps = [(noise, width) for noise in ("gaussian", "poisson") for width in ("shared", "free")]
    bar = tqdm(total=len(steps) + 1, desc="first run: compiling numerical kernels (cached afterwards)",
               unit="step", disable=not progress, leave=False)  # fmt: skip
    with bar, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for noise, width in steps:
            fit_columns(img, pos, noise=noise, width=width, background="plane", progress=False)
            bar.update(1)
        x = np.repeat([1.0, 2.0, 3.0], 10) + np.linspace(0.0, 0.1, 30)
        count_atoms(x, max_components=4, rng=0)
        bar.update(1)
