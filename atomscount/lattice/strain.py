"""Strain and displacement maps against a reference lattice: :func:`strain_map`, :class:`StrainMap`.

The convention is StatSTEM's (van den Bos et al. 2016): a reference lattice is fitted
to the columns of a region; each column's displacement is its position minus its
point of that lattice, and the displacement gradient ``G_ij = ∂u_i/∂x_j`` (x right,
y down, as in the image) gives ``ε_xx = G_xx``, ``ε_yy = G_yy``,
``ε_xy = ½ (G_xy + G_yx)`` (the tensor shear, half the engineering shear) and
``ω_xy = ½ (G_xy − G_yx)``, all as fractions (0.01 = 1 %) and ω in radians.
"""

from __future__ import annotations

import csv
import dataclasses
from collections import deque

import numpy as np
from scipy.spatial import cKDTree

from .._checks import check_integer, check_positions, check_real
from ..columns.fit import ColumnFit
from ..io import atomic_path, read_hdf5, write_hdf5
from .basis import LatticeBasis, find_basis

__all__ = ["StrainMap", "strain_map", "reference_mask", "reference_cells"]

_KIND = "StrainMap"
#: Neighbours of the same sublattice within this many lattice spacings (the longer
#: reference vector) enter a column's displacement gradient: on a square lattice the
#: four nearest and the four diagonal ones.
NEIGHBOUR_RADIUS = 1.5
#: The starting lattice vectors come from at most this many columns around the reference region.
BASIS_COLUMNS = 400
#: A column's gradient needs at least this many neighbours (two independent ones at the least).
MIN_NEIGHBOURS = 3
#: The type name :func:`~atomscount.lattice.find_sublattices` gives columns on no site; never mapped unless asked.
OFF_LATTICE_NAME = "off lattice"
#: Strain components, in the order of :attr:`StrainMap.reference_strain_error`.
COMPONENTS = ("eps_xx", "eps_yy", "eps_xy", "omega_xy")


@dataclasses.dataclass(frozen=True, repr=False)
class StrainMap:
    """Result of :func:`strain_map`: per-column displacements, strain and rotation, with errors.

    Strain components are fractions (0.01 = 1 %) and rotations in radians; lengths in Å.
    A column outside the chosen sublattices, not converged, or with too few
    neighbours has NaN values.

    Attributes
    ----------
    positions : ndarray (n, 2)
        Column positions (x, y) [Å], all columns of the input.
    reference_positions : ndarray (n, 2)
        Each column's point of the reference lattice [Å].
    displacements, displacements_error : ndarray (n, 2)
        ``positions - reference_positions`` and its standard error [Å] (the
        column's position error and that of its reference point).
    eps_xx, eps_yy, eps_xy, omega_xy : ndarray (n,)
        Strain (fractions) and rotation [rad] from the displacement gradient over
        the column's neighbours.
    eps_xx_error, eps_yy_error, eps_xy_error, omega_xy_error : ndarray (n,)
        Their standard errors from the positions' standard errors.
    sublattice : ndarray (n,) of int
        Index into ``sublattice_names``; -1 for a column left out.
    sublattice_names : tuple of str
    indices : ndarray (n, 2) of int
        Lattice indices (i, j) of each column's reference point.
    n_neighbours : ndarray (n,) of int
        Neighbours in each column's gradient.
    in_reference : ndarray (n,) of bool
        Columns the reference lattice was fitted to.
    reference_a, reference_b : ndarray (2,)
        The reference lattice vectors [Å].
    reference_origins : ndarray (k, 2)
        One lattice point of each sublattice [Å].
    reference_vectors_error : ndarray (4,)
        Standard errors of ``(a_x, a_y, b_x, b_y)`` [Å].
    reference_strain_error : ndarray (4,)
        The error the reference lattice's own uncertainty adds to every column's
        ``eps_xx, eps_yy, eps_xy, omega_xy`` alike (not included in the per-column errors).
    neighbour_radius : float
        In lattice spacings.
    angle_degrees : float or None
        The angle between a and b the fit held fixed (None: fitted freely).
    pixel_size_angstrom : float or None
    image_shape : tuple or None
    metadata : dict
    """

    positions: np.ndarray
    reference_positions: np.ndarray
    displacements: np.ndarray
    displacements_error: np.ndarray
    eps_xx: np.ndarray
    eps_yy: np.ndarray
    eps_xy: np.ndarray
    omega_xy: np.ndarray
    eps_xx_error: np.ndarray
    eps_yy_error: np.ndarray
    eps_xy_error: np.ndarray
    omega_xy_error: np.ndarray
    sublattice: np.ndarray
    sublattice_names: tuple
    indices: np.ndarray
    n_neighbours: np.ndarray
    in_reference: np.ndarray
    reference_a: np.ndarray
    reference_b: np.ndarray
    reference_origins: np.ndarray
    reference_vectors_error: np.ndarray
    reference_strain_error: np.ndarray
    neighbour_radius: float = NEIGHBOUR_RADIUS
    angle_degrees: float | None = None
    pixel_size_angstrom: float | None = None
    image_shape: tuple | None = None
    metadata: dict = dataclasses.field(default_factory=dict)

    _ARRAYS = (
        "positions", "reference_positions", "displacements", "displacements_error", "eps_xx", "eps_yy", "eps_xy",
        "omega_xy", "eps_xx_error", "eps_yy_error", "eps_xy_error", "omega_xy_error", "sublattice", "indices",
        "n_neighbours", "in_reference", "reference_a", "reference_b", "reference_origins", "reference_vectors_error",
        "reference_strain_error",
    )  # fmt: skip

    def __post_init__(self):
        n = len(self.eps_xx)
        for name in self._ARRAYS:
            v = np.array(getattr(self, name))
            if name in self._ARRAYS[:16] and len(v) != n:
                raise ValueError(f"{name} must have length {n}, got {len(v)}")
            v.flags.writeable = False
            object.__setattr__(self, name, v)
        object.__setattr__(self, "sublattice_names", tuple(str(s) for s in self.sublattice_names))
        if self.image_shape is not None:
            object.__setattr__(self, "image_shape", tuple(int(s) for s in self.image_shape))

    @property
    def n_columns(self) -> int:
        return len(self.eps_xx)

    @property
    def valid(self) -> np.ndarray:
        """Columns with a strain value."""
        return np.isfinite(self.eps_xx)

    @property
    def reference(self) -> LatticeBasis:
        """The reference lattice, with the origin of the first sublattice."""
        return LatticeBasis(a=self.reference_a, b=self.reference_b, origin=self.reference_origins[0])

    def component(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(values, errors)`` of ``"eps_xx"``, ``"eps_yy"``, ``"eps_xy"`` or ``"omega_xy"``."""
        if name not in COMPONENTS:
            raise ValueError(f"name must be one of {list(COMPONENTS)}, got {name!r}")
        return getattr(self, name), getattr(self, f"{name}_error")

    def summary(self) -> dict:
        """Plain-type summary: counts, the reference lattice, and the median and spread of each component."""
        ok = self.valid
        out = {
            "n_columns": self.n_columns,
            "n_with_strain": int(ok.sum()),
            "n_in_reference": int(self.in_reference.sum()),
            "sublattices": list(self.sublattice_names),
            "reference_a_angstrom": self.reference_a.tolist(),
            "reference_b_angstrom": self.reference_b.tolist(),
            "reference_angle_degrees": _angle(self.reference_a, self.reference_b),
            "angle_fixed_degrees": self.angle_degrees,
            "neighbour_radius": float(self.neighbour_radius),
            "reference_strain_error": dict(zip(COMPONENTS, self.reference_strain_error.tolist(), strict=True)),
        }
        for name in COMPONENTS:
            v, e = self.component(name)
            known = ok & np.isfinite(e)
            out[name] = {"median": float(np.median(v[ok])) if ok.any() else None,
                         "std": float(np.std(v[ok])) if ok.any() else None,
                         "median_error": float(np.median(e[known])) if known.any() else None}  # fmt: skip
        return out

    def __repr__(self) -> str:
        return (f"StrainMap(n_columns={self.n_columns}, with_strain={int(self.valid.sum())}, "
                f"sublattices={list(self.sublattice_names)})")  # fmt: skip

    def report(self) -> str:
        """A short text report."""
        s = self.summary()
        la, lb = np.linalg.norm(self.reference_a), np.linalg.norm(self.reference_b)
        lines = [f"StrainMap: {s['n_with_strain']} of {s['n_columns']} columns with strain; reference lattice "
                 f"|a| = {la:.4f} Å, |b| = {lb:.4f} Å, angle {s['reference_angle_degrees']:.2f}° "
                 f"from {s['n_in_reference']} columns"]  # fmt: skip
        for name, label in zip(COMPONENTS, ("ε_xx", "ε_yy", "ε_xy", "ω_xy"), strict=True):
            c = s[name]
            if c["median"] is not None:
                unit, k = ("mrad", 1e3) if name == "omega_xy" else ("%", 1e2)
                line = f"  {label}: median {k * c['median']:.3g} {unit}, spread {k * c['std']:.3g} {unit}"
                if c["median_error"] is not None:
                    line += f", median error {k * c['median_error']:.3g} {unit}"
                lines.append(line)
        return "\n".join(lines)

    # ------------------------------------------------------------------ files
    def to_hdf5(self, path) -> None:
        """Write every field to ``path`` (atomically)."""
        arrays = {name: getattr(self, name) for name in self._ARRAYS}
        attrs = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in self._ARRAYS}
        attrs["sublattice_names"] = list(self.sublattice_names)
        attrs["image_shape"] = None if self.image_shape is None else list(self.image_shape)
        write_hdf5(path, _KIND, arrays, attrs)

    @classmethod
    def from_hdf5(cls, path) -> StrainMap:
        """Read a file written by :meth:`to_hdf5`."""
        arrays, attrs = read_hdf5(path, _KIND, result_type=cls)
        kw = dict(attrs)
        for name in cls._ARRAYS:
            kw[name] = arrays[name]
        kw["in_reference"] = np.asarray(kw["in_reference"], dtype=bool)
        return cls(**kw)

    def to_csv(self, path) -> None:
        """Write one row per column (atomically): position, sublattice, displacement and strain with errors."""
        header = ["index", "sublattice", "x_angstrom", "y_angstrom", "i", "j", "ux_angstrom", "uy_angstrom",
                  "ux_error", "uy_error", "eps_xx", "eps_xx_error", "eps_yy", "eps_yy_error", "eps_xy",
                  "eps_xy_error", "omega_xy_rad", "omega_xy_error", "n_neighbours", "in_reference"]  # fmt: skip
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            for i in range(self.n_columns):
                s = int(self.sublattice[i])
                values = (*self.positions[i], *self.indices[i], *self.displacements[i], *self.displacements_error[i])
                strain = [v for name in COMPONENTS for v in (getattr(self, name)[i], getattr(self, f"{name}_error")[i])]
                w.writerow([i, self.sublattice_names[s] if s >= 0 else "",
                            *(f"{v:.8g}" for v in values[:2]), *(int(v) for v in values[2:4]),
                            *(f"{v:.8g}" for v in values[4:]), *(f"{v:.8g}" for v in strain),
                            int(self.n_neighbours[i]), int(self.in_reference[i])])  # fmt: skip


# ---------------------------------------------------------------------------- computing


def strain_map(
    fit,
    *,
    reference_region=None,
    sublattice=None,
    reference: LatticeBasis | None = None,
    angle_degrees: float | None = None,
    neighbour_radius: float = NEIGHBOUR_RADIUS,
    min_neighbours: int = MIN_NEIGHBOURS,
    types=None,
    positions_error=None,
) -> StrainMap:
    """Displacements, strain and rotation of every column against a reference lattice.

    The reference lattice (two vectors shared by all sublattices, one origin per
    sublattice) is fitted by least squares to the columns in ``reference_region``
    (a sublattice with no column there takes its origin from all its columns).
    Each column's displacement is its position minus its reference point (lattice
    indices are carried from neighbour to neighbour, so that they stay right where
    the lattice is strained by more than half a cell over the image). The
    displacement gradient of a column is the least-squares fit of its neighbours'
    displacement differences over their reference separations (neighbours of the
    same sublattice within ``neighbour_radius`` lattice spacings), and the errors
    follow from the positions' standard errors by linear propagation.

    Parameters
    ----------
    fit : ColumnFit, Sublattices or array_like (n, 2)
        The columns: a fit (positions, their errors, types and convergence), the
        result of :func:`find_sublattices` (its labels, and its fit when it has one),
        or positions (x, y) [Å].
    reference_region : (x0, x1, y0, y1) or array_like (n,) of bool, optional
        The columns the reference lattice is fitted to: those inside the
        rectangle [Å], or those marked True; all columns when not given.
    sublattice : str, int or sequence, optional
        Which sublattices (type names or indices) to map; every one when not given.
    reference : LatticeBasis, optional
        A known reference lattice: its vectors are used as they are (only the
        origins are fitted in the region).
    angle_degrees : float, optional
        Hold the angle between the reference vectors at this value (e.g. 90 for a
        cubic projection, as StatSTEM does with the projected unit cell) and fit
        their lengths and rotation; fitted freely when not given.
    neighbour_radius : float
        In lattice spacings (the longer reference vector), in (1, 3]: 1.5 takes the
        8 nearest neighbours of a square lattice; 1.1 takes only ±a and ±b, as StatSTEM.
    min_neighbours : int
        Fewer neighbours leave the column without strain (NaN).
    types : array_like (n,), optional
        Column types (sublattices) when ``fit`` is an array.
    positions_error : array_like (n, 2), optional
        Position standard errors [Å] when ``fit`` is an array; NaN errors otherwise.

    Returns
    -------
    StrainMap

    Raises
    ------
    ValueError
        When the reference region holds fewer than 5 columns of its best-populated
        sublattice, or for a bad option value.

    Notes
    -----
    A lattice turned clockwise on the screen (y down) by a small angle φ has
    ``omega_xy = -φ``. Strain is relative to the reference lattice; a reference
    fitted to the whole image makes the mean strain about zero.

    References
    ----------
    .. [1] De Backer, A. et al., Ultramicroscopy 171, 104 (2016). :doi:`10.1016/j.ultramic.2016.08.018`

    Examples
    --------
    >>> ij = np.stack(np.meshgrid(np.arange(10), np.arange(10)), -1).reshape(-1, 2)
    >>> pos = ij * 4.0 + 2.0
    >>> stretched = pos + np.where(pos[:, :1] > 20, (pos[:, :1] - 20) * [0.01, 0.0], 0.0)
    >>> m = strain_map(stretched, reference_region=(0, 18, 0, 40))
    >>> round(float(np.nanmedian(m.eps_xx[pos[:, 0] > 26])), 4)
    0.01
    """
    pos, err, labels, names, ok = _columns(fit, types, positions_error)
    n = len(pos)
    radius = check_real(neighbour_radius, "neighbour_radius", low=1.0, high=3.0, open_low=True)
    min_nb = check_integer(min_neighbours, "min_neighbours", low=2)
    if angle_degrees is not None:
        angle_degrees = check_real(angle_degrees, "angle_degrees", low=0.0, high=180.0, open_low=True, open_high=True)
    if reference is not None and not isinstance(reference, LatticeBasis):
        raise TypeError(f"reference must be a LatticeBasis, got {type(reference).__name__}")
    chosen = _chosen(sublattice, names)
    if sublattice is None:  # every sublattice that has usable columns, not the columns on no site
        chosen = [s for s in chosen if names[s] != OFF_LATTICE_NAME and np.any(ok & (labels == s))]
    empty = [names[s] for s in chosen if not np.any(ok & (labels == s))]
    if empty:
        raise ValueError(f"sublattice {empty[0]!r} has no converged column to map")
    used = ok & np.isin(labels, chosen)
    in_ref = reference_mask(pos, reference_region) & used
    if not in_ref.any():
        raise ValueError(f"reference_region holds none of the mapped columns, got {reference_region!r}")
    # the starting basis from the best-populated sublattice in the region
    main = max(chosen, key=lambda s: int(np.sum(in_ref & (labels == s))))
    if reference is None:
        start = in_ref & (labels == main)
        if start.sum() < 5:
            raise ValueError(f"reference_region must hold at least 5 columns of sublattice {names[main]!r}, "
                             f"got {int(start.sum())}")  # fmt: skip
        # the starting vectors only carry the indices from neighbour to neighbour: the sublattice's columns
        # around the region give them more surely than a small region (and a few hundred are plenty)
        pool = np.flatnonzero(used & (labels == main))
        near = np.argsort(np.linalg.norm(pos[pool] - np.mean(pos[start], axis=0), axis=1))[:BASIS_COLUMNS]
        basis = find_basis(pos[pool[near]])
        a, b = basis.a, basis.b
    else:
        a, b = reference.a, reference.b
    idx = np.zeros((n, 2), dtype=np.int64)
    centre = np.mean(pos[in_ref], axis=0)
    for s in chosen:
        members = np.flatnonzero(used & (labels == s))
        ref_members = members[in_ref[members]]
        if ref_members.size == 0:  # its origin comes from all its columns (strain does not depend on it)
            ref_members = members
        seed = ref_members[np.argmin(np.linalg.norm(pos[ref_members] - centre, axis=1))]
        idx[members] = _index(pos[members], int(np.flatnonzero(members == seed)[0]), a, b)
    a, b, origins, cov_b = _fit_reference(pos, idx, labels, in_ref, chosen, a, b, reference, angle_degrees)
    for q, s in enumerate(chosen):
        outside = used & (labels == s)
        if not np.any(outside & in_ref):
            origins[q] = np.mean(pos[outside] - idx[outside] @ np.column_stack([a, b]).T, axis=0)
    slot = {s: k for k, s in enumerate(chosen)}
    ref_pos = np.full((n, 2), np.nan)
    for s in chosen:
        m = used & (labels == s)
        ref_pos[m] = origins[slot[s]] + idx[m] @ np.column_stack([a, b]).T
    disp = pos - ref_pos
    # the reference point's error is far below a column's (hundreds of columns fix it): left out
    disp_err = np.where(used[:, None], err, np.nan)
    grad, grad_var, n_nb = _gradients(ref_pos, disp, err, labels, used, radius * max(np.linalg.norm(a),
                                      np.linalg.norm(b)), min_nb)  # fmt: skip
    values, errors = _components(grad, grad_var)
    ref_err = _reference_strain_error(a, b, cov_b)
    sub = np.full(n, -1, dtype=np.int64)
    for s in chosen:
        sub[used & (labels == s)] = slot[s]
    pixel = getattr(fit, "pixel_size_angstrom", None)
    shape = getattr(fit, "image_shape", None)
    if not isinstance(fit, ColumnFit) and getattr(fit, "fit", None) is not None:
        pixel, shape = fit.fit.pixel_size_angstrom, fit.fit.image_shape
    return StrainMap(
        positions=pos, reference_positions=ref_pos, displacements=disp, displacements_error=disp_err,
        **dict(zip(COMPONENTS, values, strict=True)),
        **{f"{c}_error": e for c, e in zip(COMPONENTS, errors, strict=True)},
        sublattice=sub, sublattice_names=tuple(names[s] for s in chosen),
        indices=np.where(used[:, None], idx, 0), n_neighbours=n_nb, in_reference=in_ref,
        reference_a=a, reference_b=b, reference_origins=origins,
        reference_vectors_error=np.sqrt(np.clip(np.diag(cov_b), 0, None)), reference_strain_error=ref_err,
        neighbour_radius=radius, angle_degrees=angle_degrees, pixel_size_angstrom=pixel,
        image_shape=shape, metadata={"n_selected": int(used.sum())},
    )  # fmt: skip


def reference_mask(positions, region) -> np.ndarray:
    """The columns in a reference region: a rectangle ``(x0, x1, y0, y1)`` [Å], a boolean mask, or None (all).

    Examples
    --------
    >>> reference_mask([[1.0, 1.0], [5.0, 1.0]], (0, 2, 0, 2)).tolist()
    [True, False]
    """
    pos = check_positions(positions)
    n = len(pos)
    if region is None:
        return np.ones(n, dtype=bool)
    arr = np.asarray(region)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise ValueError(f"reference_region as a mask must have one entry per column ({n}), got shape {arr.shape}")
        return arr.copy()
    try:
        box = np.asarray(region, dtype=float)
    except (TypeError, ValueError):
        box = np.zeros(0)
    if box.shape != (4,) or not np.all(np.isfinite(box)) or box[1] <= box[0] or box[3] <= box[2]:
        raise ValueError(f"reference_region must be (x0, x1, y0, y1) in Å with x0 < x1 and y0 < y1, or a "
                         f"boolean mask over the columns, got {region!r}")  # fmt: skip
    x, y = pos.T
    return (x >= box[0]) & (x <= box[1]) & (y >= box[2]) & (y <= box[3])


def reference_cells(fit, centre, *, n_cells: int = 3, types=None) -> np.ndarray:
    """StatSTEM's reference region: the columns of one sublattice within ``n_cells`` unit cells of a point.

    The column nearest ``centre`` and those of its type whose lattice indices
    relative to it have ``|i| + |j| <= n_cells`` (a diamond of cells, as StatSTEM's
    reference lattice takes around its reference coordinate). Pass the result as
    ``reference_region`` to :func:`strain_map`.

    Parameters
    ----------
    fit : ColumnFit, Sublattices or array_like (n, 2)
        The columns (see :func:`strain_map`).
    centre : (x, y)
        The reference coordinate [Å].
    n_cells : int
        Largest ``|i| + |j|``.
    types : array_like (n,), optional
        Column types when ``fit`` is an array.

    Returns
    -------
    ndarray (n,) of bool

    Examples
    --------
    >>> ij = np.stack(np.meshgrid(np.arange(9), np.arange(9)), -1).reshape(-1, 2) * 4.0
    >>> int(reference_cells(ij, (16.0, 16.0), n_cells=3).sum())
    25
    """
    pos, _, labels, _, ok = _columns(fit, types, None)
    n_cells = check_integer(n_cells, "n_cells", low=1)
    centre = np.asarray(centre, dtype=float)
    if centre.shape != (2,) or not np.all(np.isfinite(centre)):
        raise ValueError(f"centre must be a finite (x, y) pair in Å, got {centre!r}")
    k0 = int(np.argmin(np.where(ok, np.linalg.norm(pos - centre, axis=1), np.inf)))
    same = ok & (labels == labels[k0])
    if same.sum() < 5:
        raise ValueError(f"the sublattice of the column nearest centre has {int(same.sum())} columns, fewer than 5")
    pool = np.flatnonzero(same)
    basis = find_basis(pos[pool[np.argsort(np.linalg.norm(pos[pool] - pos[k0], axis=1))[:BASIS_COLUMNS]]])
    frac = np.linalg.solve(basis.matrix, (pos - pos[k0]).T).T
    on_site = np.abs(frac - np.rint(frac)).max(axis=1) < 0.25
    return same & on_site & (np.abs(np.rint(frac)).sum(axis=1) <= n_cells)


def _columns(fit, types, positions_error):
    """(positions, errors, labels (int), names, usable) of the input."""
    if isinstance(fit, ColumnFit):
        if types is not None or positions_error is not None:
            raise ValueError("types and positions_error are for positions given as an array; a ColumnFit has its own")
        pos = np.asarray(fit.positions, dtype=float)
        err = np.asarray(fit.positions_error, dtype=float)
        labels, names = np.asarray(fit.types, dtype=np.int64), tuple(fit.type_names)
        # a fit without errors (read from a StatSTEM file) still maps, with NaN errors
        ok = np.asarray(fit.converged, dtype=bool) & np.all(np.isfinite(pos), axis=1)
        return pos, err, labels, names, ok
    if hasattr(fit, "labels") and hasattr(fit, "basis"):  # Sublattices
        if fit.fit is not None:
            inner = fit.fit
            names = tuple(inner.type_names)
            return (*_columns(inner, None, None)[:2], np.asarray(inner.types, dtype=np.int64), names,
                    _columns(inner, None, None)[4])  # fmt: skip
        lab = np.asarray(fit.labels, dtype=np.int64)
        pos = check_positions(fit.positions, "fit.positions")
        err = np.full_like(pos, np.nan)
        return pos, err, np.maximum(lab, 0), tuple(fit.names), lab >= 0  # -1: on no site
    pos = check_positions(fit, "fit")
    n = len(pos)
    if positions_error is None:
        err = np.full((n, 2), np.nan)
    else:
        err = np.asarray(positions_error, dtype=float)
        if err.shape != (n, 2):
            raise ValueError(f"positions_error must have shape ({n}, 2), got {err.shape}")
    if types is None:
        labels, names = np.zeros(n, dtype=np.int64), ("column",)
    else:
        t = np.asarray(types)
        if t.shape != (n,):
            raise ValueError(f"types must have one entry per column ({n}), got shape {t.shape}")
        uniq, labels = np.unique(t.astype(str), return_inverse=True)
        names = tuple(str(u) for u in uniq)
    ok = np.ones(n, dtype=bool)
    return pos, err, labels.astype(np.int64), names, ok


def _chosen(sublattice, names) -> list:
    if sublattice is None:
        return list(range(len(names)))
    items = [sublattice] if isinstance(sublattice, str | int | np.integer) else list(sublattice)
    out = []
    for s in items:
        if isinstance(s, str) and s in names:
            out.append(names.index(s))
        elif isinstance(s, int | np.integer) and not isinstance(s, bool) and 0 <= int(s) < len(names):
            out.append(int(s))
        else:
            raise ValueError(f"sublattice must name one of {list(names)} (or be an index), got {s!r}")
    return sorted(set(out))


def _index(pos, seed, a, b):
    """Integer lattice indices of the columns, carried from ``seed`` (0, 0) to neighbour after neighbour."""
    basis = np.column_stack([a, b])
    inv = np.linalg.inv(basis)
    idx = np.zeros((len(pos), 2), dtype=np.int64)
    done = np.zeros(len(pos), dtype=bool)
    tree = cKDTree(pos)
    reach = 1.2 * max(np.linalg.norm(a), np.linalg.norm(b))
    done[seed] = True
    queue = deque([seed])
    while queue:
        k = queue.popleft()
        for m in tree.query_ball_point(pos[k], reach):
            if not done[m]:
                step = inv @ (pos[m] - pos[k])
                idx[m] = idx[k] + np.rint(step).astype(np.int64)
                done[m] = True
                queue.append(m)
    if not done.all():  # islands the neighbours do not reach: from the seed directly
        rest = ~done
        idx[rest] = np.rint((inv @ (pos[rest] - pos[seed]).T).T).astype(np.int64)
    return idx


def _fit_reference(pos, idx, labels, in_ref, chosen, a, b, reference, angle_degrees):
    """Least-squares reference lattice: (a, b, origins (k, 2), covariance of (a_x, a_y, b_x, b_y))."""
    rows = np.flatnonzero(in_ref)
    present = [s for s in chosen if np.any(labels[rows] == s)]
    k = len(present)
    slot = np.searchsorted(present, labels[rows])
    onehot = np.zeros((len(rows), k))
    onehot[np.arange(len(rows)), slot] = 1.0
    ij = idx[rows].astype(float)
    if reference is not None:
        resid = pos[rows] - ij @ np.column_stack([a, b]).T
        fitted = np.array([resid[slot == q].mean(axis=0) for q in range(k)])
        return np.asarray(a, float), np.asarray(b, float), _all_origins(fitted, present, chosen), np.zeros((4, 4))
    design = np.column_stack([onehot, ij])
    if np.linalg.matrix_rank(design) < k + 2:
        raise ValueError("reference_region must span two lattice directions, got columns along one line only")
    coef, *_ = np.linalg.lstsq(design, pos[rows], rcond=None)
    origins, a, b = coef[:k], coef[k], coef[k + 1]
    dof = max(2 * len(rows) - 2 * (k + 2), 1)
    resid = pos[rows] - design @ coef
    s2 = float(np.sum(resid**2)) / dof
    inv = np.linalg.inv(design.T @ design)
    cov_ab = s2 * inv[k:, k:]  # of (a_c, b_c) for each coordinate c, alike for x and y
    cov_b = np.zeros((4, 4))
    for c in range(2):  # (a_x, a_y, b_x, b_y)
        p = [c, 2 + c]
        cov_b[np.ix_(p, p)] = cov_ab
    if angle_degrees is None:
        return a, b, _all_origins(origins, present, chosen), cov_b
    a, b, origins, cov_b = _fit_fixed_angle(pos[rows], ij, onehot, a, b, origins, np.radians(angle_degrees))
    return a, b, _all_origins(origins, present, chosen), cov_b


def _all_origins(fitted, present, chosen):
    """One origin per chosen sublattice; NaN for those the region lacks (set from all their columns later)."""
    out = np.full((len(chosen), 2), np.nan)
    for q, s in enumerate(present):
        out[chosen.index(s)] = fitted[q]
    return out


def _fit_fixed_angle(pos, ij, onehot, a, b, origins, angle):
    """Reference with the angle between a and b held: parameters (rotation, |a|, |b|, origins)."""
    from scipy.optimize import least_squares

    sense = 1.0 if a[0] * b[1] - a[1] * b[0] >= 0 else -1.0
    k = onehot.shape[1]

    def vectors(p):
        t, la, lb = p[:3]
        va = la * np.array([np.cos(t), np.sin(t)])
        vb = lb * np.array([np.cos(t + sense * angle), np.sin(t + sense * angle)])
        return va, vb

    def residual(p):
        va, vb = vectors(p)
        model = onehot @ p[3:].reshape(k, 2) + ij[:, :1] * va + ij[:, 1:] * vb
        return (model - pos).ravel()

    p0 = np.concatenate([[np.arctan2(a[1], a[0]), np.linalg.norm(a), np.linalg.norm(b)], origins.ravel()])
    res = least_squares(residual, p0, method="lm", xtol=1e-14, ftol=1e-14)
    dof = max(res.fun.size - res.x.size, 1)
    s2 = float(res.fun @ res.fun) / dof
    cov = s2 * np.linalg.pinv(res.jac.T @ res.jac)
    va, vb = vectors(res.x)
    # (a_x, a_y, b_x, b_y) as functions of (rotation, |a|, |b|): their Jacobian carries the covariance over
    t, la, lb = res.x[:3]
    tb = t + sense * angle
    jac = np.array([[-la * np.sin(t), np.cos(t), 0.0], [la * np.cos(t), np.sin(t), 0.0],
                    [-lb * np.sin(tb), 0.0, np.cos(tb)], [lb * np.cos(tb), 0.0, np.sin(tb)]])  # fmt: skip
    return va, vb, res.x[3:].reshape(k, 2), jac @ cov[:3, :3] @ jac.T


def _gradients(ref_pos, disp, err, labels, used, reach, min_nb):
    """Per column: the displacement gradient G (2, 2) [G_ij = du_i/dx_j], the variance of each element, and
    the number of neighbours."""
    n = len(ref_pos)
    grad = np.full((n, 2, 2), np.nan)
    var = np.full((n, 2, 2), np.nan)
    n_nb = np.zeros(n, dtype=np.int64)
    for s in np.unique(labels[used]):
        members = np.flatnonzero(used & (labels == s))
        tree = cKDTree(ref_pos[members])
        for local, nbs in enumerate(tree.query_ball_point(ref_pos[members], reach)):
            i = members[local]
            nb = members[[m for m in nbs if m != local]]
            n_nb[i] = len(nb)
            if len(nb) < min_nb:
                continue
            dr = ref_pos[nb] - ref_pos[i]
            if np.linalg.matrix_rank(dr) < 2:
                continue
            op = np.linalg.pinv(dr)  # (2, K): G^T = op @ (disp[nb] - disp[i])
            grad[i] = (op @ (disp[nb] - disp[i])).T
            total = op.sum(axis=1)  # coefficient of the column itself, with a minus sign
            # var G[c, j] = sum_k op[j, k]^2 err[k, c]^2 + total[j]^2 err[i, c]^2
            var[i] = (err[nb].T ** 2 @ (op.T**2)) + np.outer(err[i] ** 2, total**2)
    return grad, var, n_nb


def _components(grad, var):
    """(eps_xx, eps_yy, eps_xy, omega_xy) and their errors from G and the variances of its elements
    (x and y errors independent, so the two shear terms are too)."""
    gxx, gxy, gyx, gyy = grad[:, 0, 0], grad[:, 0, 1], grad[:, 1, 0], grad[:, 1, 1]
    shear_err = 0.5 * np.sqrt(var[:, 0, 1] + var[:, 1, 0])
    values = (gxx, gyy, 0.5 * (gxy + gyx), 0.5 * (gxy - gyx))
    errors = (np.sqrt(var[:, 0, 0]), np.sqrt(var[:, 1, 1]), shear_err, shear_err)
    return values, errors


def _reference_strain_error(a, b, cov_b):
    """Error of (eps_xx, eps_yy, eps_xy, omega_xy) common to all columns from the reference vectors' covariance:
    a reference off by dB shifts every gradient by -dB B^-1."""
    inv = np.linalg.inv(np.column_stack([a, b]))
    grads = np.zeros((4, 4))
    for p in range(4):  # (a_x, a_y, b_x, b_y)
        d_b = np.zeros((2, 2))
        d_b[p % 2, p // 2] = 1.0
        g = -d_b @ inv
        grads[:, p] = (g[0, 0], g[1, 1], 0.5 * (g[0, 1] + g[1, 0]), 0.5 * (g[0, 1] - g[1, 0]))
    return np.sqrt(np.clip(np.einsum("cp,pq,cq->c", grads, cov_b, grads), 0, None))


def _angle(a, b) -> float:
    cos = float(np.dot(a, b)) / (np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))
