"""numba kernels of the core-shell search.

Each has a NumPy reference in :mod:`atomscount.coreshell.forward`
(``columns_scs_reference``) and a test comparing the two.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np


@nb.njit(cache=True)
def _increment(inc, curves, k, depth):
    n = inc.shape[1]
    if depth <= n:
        x = min(max(depth - 1.0, 0.0), n - 1.0)
        i0 = int(math.floor(x))
        if i0 >= n - 1:
            return inc[k, n - 1]
        f = x - i0
        return inc[k, i0] * (1.0 - f) + inc[k, i0 + 1] * f
    amp, n_sat, slope = curves[k, 0], curves[k, 1], curves[k, 2]
    return amp * (math.exp(-(depth - 1.0) / n_sat) - math.exp(-depth / n_sat)) + slope


@nb.njit(cache=True)
def columns_scs(which, start, order, codes, element_of_code, inc, curves, lam, out):
    """Lensing-model SCS of the columns ``which``, written into ``out[which]``.

    ``codes[site]`` is the site's occupancy; ``element_of_code[code]`` the model's
    element index, or -1 for an empty site (skipped: it neither scatters nor lenses).
    """
    e = lam.shape[0]
    depth_above = np.empty(e)
    for w in range(which.shape[0]):
        j = which[w]
        for b in range(e):
            depth_above[b] = 0.0
        total = 0.0
        for p in range(start[j], start[j + 1]):
            k = element_of_code[codes[order[p]]]
            if k < 0:
                continue
            total += _increment(inc, curves, k, 1.0 + depth_above[k])
            for b in range(e):
                depth_above[b] += lam[k, b]
        out[j] = total
