"""Polarisation maps of perovskites: :func:`polarisation_map`, :class:`PolarisationMap`."""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.spatial import cKDTree

from ..io import read_hdf5, write_hdf5
from .strain import _columns

__all__ = ["PolarisationMap", "polarisation_map"]

_KIND = "PolarisationMap"
#: The four A-site neighbours of a B column lie within this many A–A spacings of it
#: (they are at 0.71 spacings in a perovskite along [001]).
A_NEIGHBOUR_REACH = 0.9


@dataclasses.dataclass(frozen=True, repr=False)
class PolarisationMap:
    """Result of :func:`polarisation_map`: the displacement of each B column from the centre of its A cell.

    Attributes
    ----------
    positions : ndarray (m, 2)
        The B columns' positions (x, y) [Å].
    vectors, vectors_error : ndarray (m, 2)
        B position minus the mean of its four A neighbours, and its standard error
        [Å]; NaN for a B column without four A neighbours around it (at an edge).
    column_index : ndarray (m,) of int
        Index of each B column in the input.
    a_site, b_site : str
        The type names of the A and B sites.
    """

    positions: np.ndarray
    vectors: np.ndarray
    vectors_error: np.ndarray
    column_index: np.ndarray
    a_site: str
    b_site: str

    _ARRAYS = ("positions", "vectors", "vectors_error", "column_index")

    def __post_init__(self):
        m = len(self.column_index)
        for name in self._ARRAYS:
            v = np.array(getattr(self, name))
            if len(v) != m:
                raise ValueError(f"{name} must have length {m}, got {len(v)}")
            v.flags.writeable = False
            object.__setattr__(self, name, v)

    @property
    def valid(self) -> np.ndarray:
        return np.all(np.isfinite(self.vectors), axis=1)

    @property
    def magnitude(self) -> np.ndarray:
        """Length of each vector [Å]."""
        return np.hypot(*self.vectors.T)

    def summary(self) -> dict:
        ok = self.valid
        known = ok & np.all(np.isfinite(self.vectors_error), axis=1)
        return {
            "n_b_columns": len(self.column_index),
            "n_with_vector": int(ok.sum()),
            "a_site": self.a_site,
            "b_site": self.b_site,
            "mean_vector_angstrom": np.mean(self.vectors[ok], axis=0).tolist() if ok.any() else None,
            "median_magnitude_angstrom": float(np.median(self.magnitude[ok])) if ok.any() else None,
            "median_error_angstrom": float(np.median(self.vectors_error[known])) if known.any() else None,
        }

    def __repr__(self) -> str:
        return f"PolarisationMap(b_columns={len(self.column_index)}, with_vector={int(self.valid.sum())})"

    def to_hdf5(self, path) -> None:
        """Write every field to ``path`` (atomically)."""
        write_hdf5(path, _KIND, {n: getattr(self, n) for n in self._ARRAYS},
                   {"a_site": self.a_site, "b_site": self.b_site})  # fmt: skip

    @classmethod
    def from_hdf5(cls, path) -> PolarisationMap:
        """Read a file written by :meth:`to_hdf5`."""
        arrays, attrs = read_hdf5(path, _KIND, result_type=cls)
        return cls(**{n: arrays[n] for n in cls._ARRAYS}, a_site=attrs["a_site"], b_site=attrs["b_site"])


def polarisation_map(fit, a_site, b_site, *, types=None, positions_error=None) -> PolarisationMap:
    """The displacement of every B-site column from the centre of its four A-site neighbours.

    In a perovskite ABO₃ along [001] each B column sits at the centre of a square of
    four A columns; its offset from their mean position is the local polar
    displacement (for PbTiO₃ and BaTiO₃, parallel to the polarisation).

    Parameters
    ----------
    fit : ColumnFit, Sublattices or array_like (n, 2)
        The columns (see :func:`strain_map`); non-converged columns are left out.
    a_site, b_site : str or int
        Type names (or indices) of the A and B columns.
    types : array_like (n,), optional
        Column types when ``fit`` is an array.
    positions_error : array_like (n, 2), optional
        Position standard errors [Å] when ``fit`` is an array.

    Returns
    -------
    PolarisationMap

    Raises
    ------
    ValueError
        When ``a_site`` or ``b_site`` names no type, or names the same one.

    Examples
    --------
    >>> ij = np.stack(np.meshgrid(np.arange(6), np.arange(6)), -1).reshape(-1, 2) * 4.0
    >>> pos = np.vstack([ij, ij + [2.1, 2.0]])
    >>> m = polarisation_map(pos, "A", "B", types=["A"] * 36 + ["B"] * 36)
    >>> np.round(np.nanmean(m.vectors, axis=0), 6).tolist()
    [0.1, 0.0]
    """
    pos, err, labels, names, ok = _columns(fit, types, positions_error)

    def site(value, what):
        if isinstance(value, str) and value in names:
            return names.index(value)
        if isinstance(value, int | np.integer) and not isinstance(value, bool) and 0 <= int(value) < len(names):
            return int(value)
        raise ValueError(f"{what} must name one of the types {list(names)} (or be an index), got {value!r}")

    ka, kb = site(a_site, "a_site"), site(b_site, "b_site")
    if ka == kb:
        raise ValueError(f"a_site and b_site must be different types, got {names[ka]!r} for both")
    a_idx = np.flatnonzero(ok & (labels == ka))
    b_idx = np.flatnonzero(labels == kb)
    vectors = np.full((len(b_idx), 2), np.nan)
    errors = np.full((len(b_idx), 2), np.nan)
    if len(a_idx) >= 4:
        tree = cKDTree(pos[a_idx])
        spacing = float(np.median(tree.query(pos[a_idx], k=2)[0][:, 1]))
        dist, nb = tree.query(pos[b_idx], k=4)
        for row, (i, d, four) in enumerate(zip(b_idx, dist, nb, strict=True)):
            if not ok[i] or np.any(d > A_NEIGHBOUR_REACH * spacing):
                continue
            corners = pos[a_idx[four]]
            if not _surrounds(corners - pos[i]):
                continue
            vectors[row] = pos[i] - corners.mean(axis=0)
            errors[row] = np.sqrt(err[i] ** 2 + np.sum(err[a_idx[four]] ** 2, axis=0) / 16.0)
    return PolarisationMap(positions=pos[b_idx], vectors=vectors, vectors_error=errors, column_index=b_idx,
                           a_site=names[ka], b_site=names[kb])  # fmt: skip


def _surrounds(offsets) -> bool:
    """Whether the points at ``offsets`` from a column lie all around it (no gap of half a turn or more)."""
    angles = np.sort(np.arctan2(offsets[:, 1], offsets[:, 0]))
    gaps = np.diff(np.concatenate([angles, angles[:1] + 2 * np.pi]))
    return bool(np.all(gaps < 0.75 * np.pi))
