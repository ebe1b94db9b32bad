"""Predicted SCS of every column of every view from the element on each site, and the χ².

A site's occupancy is a code: :data:`EMPTY` (0), :data:`SHELL` (1) or :data:`CORE` (2).
Each view groups the same sites into its own columns (:class:`~.sites.Columns`), and
the lensing model of that view's zone axis turns each column's sequence of elements
(beam entrance first) into an SCS (van den Bos et al., PRL 116, 246101, 2016,
doi:10.1103/PhysRevLett.116.246101). When a site changes, only its column in each
view changes, so :class:`ForwardModel` keeps every column's prediction and
recomputes just the touched ones.
"""

from __future__ import annotations

import numpy as np

from . import _kernels
from .sites import Columns

__all__ = ["EMPTY", "SHELL", "CORE", "LensingTables", "ForwardModel", "columns_scs_reference"]

EMPTY, SHELL, CORE = 0, 1, 2


class LensingTables:
    """A :class:`~atomscount.library.LensingModel` as the arrays the kernel reads, for one core/shell pair.

    Raises
    ------
    ValueError
        If the model's elements are not exactly the core and the shell element.
    """

    def __init__(self, model, *, core: str, shell: str):
        elements = tuple(getattr(model, "elements", ()))
        if sorted(elements) != sorted((core, shell)) or core == shell:
            raise ValueError(f"lensing model for {getattr(model, 'zone_axis', '?')!r} holds elements "
                             f"{list(elements)}, but the particle is {core!r} (core) / {shell!r} (shell)")  # fmt: skip
        tables = np.asarray(model.tables, dtype=np.float64)
        self.model = model
        self.inc = np.ascontiguousarray(np.diff(np.concatenate([np.zeros((len(tables), 1)), tables], axis=1)))
        self.curves = np.ascontiguousarray(np.asarray(model.curves, dtype=np.float64))
        self.lam = np.ascontiguousarray(np.asarray(model.lam, dtype=np.float64))
        self.element_of_code = np.array([-1, elements.index(shell), elements.index(core)], dtype=np.int64)
        self.symbols = (None, shell, core)


def columns_scs_reference(which, start, order, codes, element_of_code, inc, curves, lam, out) -> None:
    """NumPy reference of :func:`atomscount.coreshell._kernels.columns_scs` (same arguments)."""
    n = inc.shape[1]
    full_x = np.arange(n, dtype=np.float64)
    for j in which:
        seq = element_of_code[codes[order[start[j] : start[j + 1]]]]
        seq = seq[seq >= 0]
        if len(seq) == 0:
            out[j] = 0.0
            continue
        # effective depth of atom n: 1 + sum over the atoms above it of lam[Z_m, Z_n]
        above = np.vstack([np.zeros(lam.shape[0]), np.cumsum(lam[seq], axis=0)[:-1]])
        depth = 1.0 + above[np.arange(len(seq)), seq]
        total = 0.0
        for k, d in zip(seq, depth, strict=True):
            if d <= n:
                total += np.interp(np.clip(d - 1.0, 0.0, n - 1.0), full_x, inc[k])
            else:
                amp, n_sat, slope = curves[k, :3]
                total += amp * (np.exp(-(d - 1.0) / n_sat) - np.exp(-d / n_sat)) + slope
        out[j] = total


class ForwardModel:
    """Cached per-column predictions and χ² for a set of views of one site set.

    Parameters
    ----------
    codes : ndarray (m,) of int
        Occupancy of each site; the model keeps (and updates) its own copy.
    columns : list of Columns
        One grouping per view.
    tables : list of LensingTables
        One per view.
    measured, sigma : list of ndarray
        Per view, the measured SCS [Å²] and its standard error of each of the view's
        columns (``columns[v]`` order). Columns measured but holding no site enter
        through ``offset``.
    offset : list of float, optional
        Per view, the χ² of measured columns that no site projects onto.
    """

    def __init__(self, codes, columns: list[Columns], tables: list[LensingTables], measured, sigma, offset=None):
        self.codes = np.array(codes, dtype=np.int64)
        self.columns = list(columns)
        self.tables = list(tables)
        self.measured = [np.asarray(y, dtype=np.float64) for y in measured]
        self.weight = [1.0 / np.asarray(s, dtype=np.float64) ** 2 for s in sigma]
        self.offset = [0.0] * len(columns) if offset is None else [float(o) for o in offset]
        if not (len(self.columns) == len(self.tables) == len(self.measured) == len(self.weight)):
            raise ValueError("columns, tables, measured and sigma need one entry per view")
        for v, c in enumerate(self.columns):
            if len(self.measured[v]) != c.n_columns or len(self.weight[v]) != c.n_columns:
                raise ValueError(f"view {v}: measured and sigma need {c.n_columns} entries (one per column)")
        self.predicted = [np.zeros(c.n_columns) for c in self.columns]
        self.refresh()

    def _compute(self, v: int, which: np.ndarray) -> None:
        c, t = self.columns[v], self.tables[v]
        _kernels.columns_scs(which, c.start, c.order, self.codes, t.element_of_code, t.inc, t.curves, t.lam,
                             self.predicted[v])  # fmt: skip

    def refresh(self) -> None:
        """Recompute every column of every view."""
        for v, c in enumerate(self.columns):
            self._compute(v, np.arange(c.n_columns, dtype=np.int64))
        self._chi2 = np.array([self._full_chi2(v) for v in range(len(self.columns))])

    def _full_chi2(self, v: int) -> float:
        r = self.measured[v] - self.predicted[v]
        return float(np.sum(r * r * self.weight[v]) + self.offset[v])

    def set_codes(self, codes) -> None:
        """Replace the whole occupancy and recompute everything."""
        self.codes[:] = codes
        self.refresh()

    def chi2_per_view(self) -> np.ndarray:
        return self._chi2.copy()

    def chi2(self) -> float:
        return float(self._chi2.sum())

    def change(self, sites, new_codes) -> float:
        """Set ``codes[sites] = new_codes``, update only the touched columns, and return the change of χ²."""
        sites = np.atleast_1d(np.asarray(sites, dtype=np.int64))
        self.codes[sites] = new_codes
        delta = 0.0
        for v, c in enumerate(self.columns):
            which = np.unique(c.column_of_site[sites])
            y, w, p = self.measured[v], self.weight[v], self.predicted[v]
            before = float(np.sum((y[which] - p[which]) ** 2 * w[which]))
            self._compute(v, which)
            d = float(np.sum((y[which] - p[which]) ** 2 * w[which])) - before
            self._chi2[v] += d
            delta += d
        return delta
