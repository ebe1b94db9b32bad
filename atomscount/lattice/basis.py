"""The lattice of a set of columns: two basis vectors and an origin, :func:`find_basis`."""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from .._checks import check_positions, check_real
from ..io import read_hdf5, write_hdf5

__all__ = ["LatticeBasis", "find_basis", "fractional", "lattice_points"]

_KIND = "LatticeBasis"
#: A column further than this fraction of the shortest lattice vector from its
#: lattice point is left out of the least-squares fit (a spurious or strongly displaced column).
INLIER_FRACTION = 0.25
#: Neighbour vectors are collected from at most this many columns (chosen with a fixed seed).
VECTOR_SAMPLE = 3000
#: A neighbour vector is a translation of the lattice when, both ways, at least this share of the
#: columns (as a fraction of the best-supported vector's) has a column at its end.
TRANSLATION_SUPPORT = 0.7
#: Two lattice vectors within this fraction of each other's length count as equally long.
EQUAL_LENGTH = 0.02
#: Two classes of columns count as two sublattices when their intensities (with
#: the slow trend removed) differ by at least this many within-class standard deviations.
MIN_CLASS_SEPARATION = 3.0


@dataclasses.dataclass(frozen=True, repr=False)
class LatticeBasis:
    """A 2D lattice: column positions ``origin + i a + j b`` (+ the sites of the cell) [Å].

    Attributes
    ----------
    a, b : ndarray (2,)
        The basis vectors (x, y) [Å]: a reduced basis (``|a| <= |b|``, the angle
        between them within 60°–120°; of two vectors within 2 % of the same
        length, ``a`` is the one nearer the x axis), ``a`` pointing to +x (or +y
        when it lies along y), and ``b`` the one that makes ``a × b > 0``.
    origin : ndarray (2,)
        A lattice point (x, y) [Å] near the middle of the columns; with two
        sublattices, a column of the brighter one (or of type 0).
    rms_angstrom : float
        Root-mean-square distance of the fitted columns from their lattice points [Å].
    n_fitted : int
        Number of columns in the least-squares fit.
    supercell : int
        1 when the columns form a simple lattice; 2 when intensities or types show
        that every second column differs, so that the cell holds two sites (for a
        perovskite along [001], the A–A cell with the B column at (½, ½)).
    """

    a: np.ndarray
    b: np.ndarray
    origin: np.ndarray
    rms_angstrom: float = 0.0
    n_fitted: int = 0
    supercell: int = 1

    def __post_init__(self):
        for name in ("a", "b", "origin"):
            v = np.array(getattr(self, name), dtype=np.float64)
            if v.shape != (2,) or not np.all(np.isfinite(v)):
                raise ValueError(f"{name} must be a finite (x, y) pair in Å, got {getattr(self, name)!r}")
            v.flags.writeable = False
            object.__setattr__(self, name, v)
        if abs(float(_cross(self.a, self.b))) < 1e-9 * max(float(self.a @ self.a), float(self.b @ self.b), 1e-300):
            raise ValueError(f"a and b must be independent, got a={self.a.tolist()} and b={self.b.tolist()}")

    @property
    def matrix(self) -> np.ndarray:
        """``[a, b]`` as columns: ``position = origin + matrix @ (i, j)``."""
        return np.column_stack([self.a, self.b])

    @property
    def cell_area(self) -> float:
        """Area of the unit cell [Å²]."""
        return abs(float(_cross(self.a, self.b)))

    @property
    def angle_degrees(self) -> float:
        """Angle between a and b [degrees]."""
        cos = float(self.a @ self.b) / (np.linalg.norm(self.a) * np.linalg.norm(self.b))
        return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))

    def fractional(self, positions) -> np.ndarray:
        """Fractional coordinates (i, j) of ``positions`` (n, 2) [Å]; see :func:`fractional`."""
        return fractional(positions, self)

    def cartesian(self, fractional_coordinates) -> np.ndarray:
        """Positions (x, y) [Å] of fractional coordinates (n, 2)."""
        f = np.asarray(fractional_coordinates, dtype=np.float64).reshape(-1, 2)
        return self.origin + f @ self.matrix.T

    def summary(self) -> dict:
        """Plain-type summary: vectors and origin [Å], lengths [Å], angle [degrees]."""
        return {
            "a": self.a.tolist(),
            "b": self.b.tolist(),
            "origin": self.origin.tolist(),
            "length_a_angstrom": float(np.linalg.norm(self.a)),
            "length_b_angstrom": float(np.linalg.norm(self.b)),
            "angle_degrees": self.angle_degrees,
            "rms_angstrom": float(self.rms_angstrom),
            "n_fitted": int(self.n_fitted),
            "supercell": int(self.supercell),
        }

    def __repr__(self) -> str:
        la, lb = np.linalg.norm(self.a), np.linalg.norm(self.b)
        return (f"LatticeBasis(|a|={la:.4g} Å, |b|={lb:.4g} Å, angle={self.angle_degrees:.2f}°, "
                f"supercell={self.supercell}, rms={self.rms_angstrom:.3g} Å)")  # fmt: skip

    def to_hdf5(self, path) -> None:
        """Write every field to ``path`` (atomically)."""
        arrays = {"a": self.a, "b": self.b, "origin": self.origin}
        attrs = {"rms_angstrom": float(self.rms_angstrom), "n_fitted": int(self.n_fitted),
                 "supercell": int(self.supercell)}  # fmt: skip
        write_hdf5(path, _KIND, arrays, attrs)

    @classmethod
    def from_hdf5(cls, path) -> LatticeBasis:
        """Read a file written by :meth:`to_hdf5`."""
        arrays, attrs = read_hdf5(path, _KIND, result_type=cls)
        return cls(**arrays, **attrs)


def fractional(positions, basis: LatticeBasis) -> np.ndarray:
    """Fractional lattice coordinates of positions.

    Parameters
    ----------
    positions : array_like (n, 2)
        (x, y) [Å].
    basis : LatticeBasis

    Returns
    -------
    ndarray (n, 2)
        (i, j) with ``positions = origin + i a + j b``; a column on a lattice point
        has integer (i, j), one at the centre of the cell (½, ½) modulo 1.

    Examples
    --------
    >>> basis = LatticeBasis(a=(4.0, 0.0), b=(0.0, 4.0), origin=(1.0, 1.0))
    >>> fractional([[9.0, 3.0]], basis).tolist()
    [[2.0, 0.5]]
    """
    if not isinstance(basis, LatticeBasis):
        raise TypeError(f"basis must be a LatticeBasis, got {type(basis).__name__}")
    pos = check_positions(positions)
    return np.linalg.solve(basis.matrix, (pos - basis.origin).T).T


def lattice_points(basis: LatticeBasis, region, *, sites=((0.0, 0.0),)) -> np.ndarray:
    """Positions of the lattice's sites inside a rectangle.

    Parameters
    ----------
    basis : LatticeBasis
    region : (x0, x1, y0, y1)
        The rectangle [Å], edges included; the order of ``strain_map``'s
        ``reference_region`` and the command line's ``--region``.
    sites : array_like (k, 2)
        Fractional coordinates of the sites in the cell, e.g. ``[(0, 0), (0.5, 0.5)]``
        for both cation sublattices of a perovskite along [001].

    Returns
    -------
    ndarray (m, 2)
        (x, y) [Å], site by site, and within a site ordered by i then j.

    Examples
    --------
    >>> basis = LatticeBasis(a=(2.0, 0.0), b=(0.0, 2.0), origin=(0.0, 0.0))
    >>> len(lattice_points(basis, (0.0, 4.0, 0.0, 4.0)))
    9
    """
    if not isinstance(basis, LatticeBasis):
        raise TypeError(f"basis must be a LatticeBasis, got {type(basis).__name__}")
    box = np.asarray(region, dtype=np.float64)
    if box.shape != (4,) or not np.all(np.isfinite(box)) or box[1] < box[0] or box[3] < box[2]:
        raise ValueError(f"region must be (x0, x1, y0, y1) in Å with x0 <= x1 and y0 <= y1, got {region!r}")
    box = box[[0, 2, 1, 3]]  # (x_min, y_min, x_max, y_max) below
    site = np.asarray(sites, dtype=np.float64).reshape(-1, 2)
    if not np.all(np.isfinite(site)):
        raise ValueError(f"sites must be finite fractional coordinates, got {sites!r}")
    corners = np.array([[box[0], box[1]], [box[2], box[1]], [box[0], box[3]], [box[2], box[3]]])
    fc = fractional(corners, basis)
    lo = np.floor(fc.min(axis=0) - site.max(axis=0)) - 1
    hi = np.ceil(fc.max(axis=0) - site.min(axis=0)) + 1
    ii, jj = np.meshgrid(np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1), indexing="ij")
    grid = np.column_stack([ii.ravel(), jj.ravel()])
    out = []
    eps = 1e-9 * max(1.0, float(np.abs(box).max()))
    for s in site:
        p = basis.cartesian(grid + s)
        inside = ((p[:, 0] >= box[0] - eps) & (p[:, 0] <= box[2] + eps)
                  & (p[:, 1] >= box[1] - eps) & (p[:, 1] <= box[3] + eps))  # fmt: skip
        out.append(p[inside])
    return np.concatenate(out) if out else np.zeros((0, 2))


def find_basis(positions, *, intensities=None, types=None, tolerance: float = INLIER_FRACTION) -> LatticeBasis:
    """Fit the lattice of a set of columns: its two shortest independent vectors and an origin.

    The vectors between neighbouring columns are grouped; a group that takes
    nearly every column onto another, both ways, is a translation of the lattice
    (a honeycomb's bonds are not); the shortest translation is ``a``, the
    shortest one not parallel to it ``b`` (then reduced). Every column gets the integer indices of its nearest
    lattice point, and the origin and vectors follow by linear least squares over
    the columns within ``tolerance |a|`` of their lattice point. The fit grows
    outwards from the middle, so that a lattice that bends slowly is still
    indexed right, and columns off the lattice (spurious detections) or missing
    columns do not move it.

    Positions alone cannot tell a perovskite's A and B columns apart (together
    they form a simple lattice, √2 smaller and turned 45°). Given ``intensities``
    (e.g. SCS) or ``types``, the lattice is doubled where every second column
    differs: the basis is then that of the whole cell (the A–A cell, with the B
    column at (½, ½)), its origin on the brighter columns (or those of type 0),
    and the fit uses the columns on the origin's site only.

    Parameters
    ----------
    positions : array_like (n, 2)
        Column positions (x, y) [Å], at least 5.
    intensities : array_like (n,), optional
        A per-column brightness (SCS [Å²], peak height).
    types : array_like (n,) of int, optional
        Known column types; takes the place of ``intensities``.
    tolerance : float
        Largest distance of a fitted column from its lattice point, as a fraction
        of the shortest vector between columns, in (0, 0.5).

    Returns
    -------
    LatticeBasis

    Raises
    ------
    ValueError
        With fewer than 5 columns, or when the columns form no lattice (no two
        independent neighbour vectors shared by a good part of them).

    Examples
    --------
    >>> xy = np.stack(np.meshgrid(np.arange(8.0), np.arange(6.0)), -1).reshape(-1, 2) * 3.9
    >>> basis = find_basis(xy + 0.5)
    >>> np.allclose(basis.a, [3.9, 0.0]), np.allclose(basis.b, [0.0, 3.9]), basis.supercell
    (True, True, 1)
    """
    pos = check_positions(positions)
    n = len(pos)
    if n < 5:
        raise ValueError(f"positions must hold at least 5 columns to find a lattice, got {n}")
    tol = check_real(tolerance, "tolerance", low=0.0, high=0.5, open_low=True, open_high=True)
    values = _class_values(intensities, types, n)
    a, b = _reduce(*_neighbour_vectors(pos))
    shortest = min(np.linalg.norm(a), np.linalg.norm(b))
    origin, a, b, idx, inl = _grow_fit(pos, a, b, tol)
    supercell = 1
    if values is not None:
        split = _best_split(pos, values, idx, inl, a, b, is_types=types is not None)
        if split is not None:
            new_a, new_b, shift = split
            origin = origin + shift
            a, b = _reduce(new_a, new_b)
            # the same distance in Å as before: the other site's columns stay out of the fit
            origin, a, b, idx, inl = _grow_fit(pos, a, b, tol * shortest / min(np.linalg.norm(a), np.linalg.norm(b)),
                                               origin=origin)  # fmt: skip
            supercell = 2
    fitted = origin + idx @ np.column_stack([a, b]).T
    resid = np.linalg.norm(pos[inl] - fitted[inl], axis=1)
    a, b = _orient(a, b)
    return LatticeBasis(a=a, b=b, origin=origin, rms_angstrom=float(np.sqrt(np.mean(resid**2))),
                        n_fitted=int(inl.sum()), supercell=supercell)  # fmt: skip


def _cross(u, v) -> float:
    """The z component of u × v for 2D vectors."""
    return float(u[0] * v[1] - u[1] * v[0])


def _class_values(intensities, types, n):
    if types is not None:
        t = np.asarray(types)
        if t.shape != (n,):
            raise ValueError(f"types must have length {n} (one per column), got shape {t.shape}")
        return np.unique(t, return_inverse=True)[1].astype(np.float64)
    if intensities is not None:
        v = np.asarray(intensities, dtype=np.float64)
        if v.shape != (n,):
            raise ValueError(f"intensities must have length {n} (one per column), got shape {v.shape}")
        if not np.all(np.isfinite(v)):
            raise ValueError(f"intensities must be finite, got {int((~np.isfinite(v)).sum())} NaN/inf")
        return v
    return None


def _neighbour_vectors(pos):
    """The two shortest independent vectors shared by a good part of the columns.

    The vectors from (up to :data:`VECTOR_SAMPLE`) columns to their neighbours
    within 2.6 spacings, and their opposites, are binned on a grid of a tenth of
    the spacing; the strong peaks of the binned counts, each refined to the mean
    of the vectors within a fifth of the spacing, are the candidates.
    """
    tree = cKDTree(pos)
    d1 = tree.query(pos, k=2)[0][:, 1]
    d0 = float(np.median(d1))
    if not d0 > 0:
        raise ValueError("positions must be distinct columns, got most of them on top of each other")
    rng = np.random.default_rng(0)
    sample = np.arange(len(pos)) if len(pos) <= VECTOR_SAMPLE else rng.choice(len(pos), VECTOR_SAMPLE, replace=False)
    reach = 2.6 * d0
    vec = [pos[nb] - pos[k] for k, nb in zip(sample, tree.query_ball_point(pos[sample], reach), strict=True)]
    raw = np.concatenate(vec)
    raw = raw[np.linalg.norm(raw, axis=1) > 0.5 * d0]
    vec = np.vstack([raw, -raw])
    step = 0.1 * d0
    edges = np.arange(-reach - step, reach + 1.5 * step, step)
    hist = np.histogram2d(vec[:, 0], vec[:, 1], bins=(edges, edges))[0]
    # a cluster spreads over a few bins: count each bin with its neighbours
    summed = ndimage.uniform_filter(hist, size=3, mode="constant") * 9
    peaks = (summed == ndimage.maximum_filter(summed, size=5, mode="constant")) & (summed > 0)
    strength = summed[peaks]
    keep = strength >= max(3, 0.25 * strength.max())
    centres_bin = np.argwhere(peaks)[keep]
    mids = 0.5 * (edges[:-1] + edges[1:])
    centres, support = [], []
    for i, j in centres_bin:
        guess = np.array([mids[i], mids[j]])
        near = np.linalg.norm(vec - guess, axis=1) <= 0.2 * d0
        if near.sum() >= 3:
            c = vec[near].mean(axis=0)
            centres.append(c)
            # a translation of the lattice takes (nearly) every column onto another, both ways; a vector
            # between two sites of a cell (a honeycomb's bond) only the columns of one site
            support.append(min(np.sum(np.linalg.norm(raw - c, axis=1) <= 0.2 * d0),
                               np.sum(np.linalg.norm(raw + c, axis=1) <= 0.2 * d0)))  # fmt: skip
    if centres:
        support = np.array(support, dtype=float)
        centres = [c for c, n in zip(centres, support, strict=True) if n >= TRANSLATION_SUPPORT * support.max()]
    if not centres:
        raise ValueError("positions form no 2D lattice: no neighbour vector is shared by a good part of the "
                         f"{len(pos)} columns")  # fmt: skip
    centres = np.array(centres)
    centres = centres[np.argsort(np.linalg.norm(centres, axis=1), kind="stable")]
    a = centres[0]
    for c in centres[1:]:
        if abs(_cross(a, c)) > 0.3 * np.linalg.norm(a) * np.linalg.norm(c):
            return a, c
    raise ValueError("positions form no 2D lattice: no two independent neighbour vectors are shared by "
                     f"a good part of the {len(pos)} columns")  # fmt: skip


def _reduce(a, b):
    """Lagrange–Gauss reduction: the shortest basis of the same lattice."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    for _ in range(100):
        if b @ b < a @ a:
            a, b = b, a
        m = np.rint((a @ b) / (a @ a))
        if m == 0:
            break
        b = b - m * a
    if b @ b < a @ a:
        a, b = b, a
    return a, b


def _orient(a, b):
    # of two vectors equally long (a square or centred cell), a is the one nearer the x axis
    la, lb = np.linalg.norm(a), np.linalg.norm(b)
    if abs(la - lb) <= EQUAL_LENGTH * max(la, lb) and abs(b[0]) / lb > abs(a[0]) / la:
        a, b = b, a
    if a[0] < -1e-9 * np.linalg.norm(a) or (abs(a[0]) <= 1e-9 * np.linalg.norm(a) and a[1] < 0):
        a = -a
    if _cross(a, b) < 0:
        b = -b
    return a, b


def _lsq(pos, idx):
    design = np.column_stack([np.ones(len(idx)), idx])
    coef = np.linalg.lstsq(design, pos, rcond=None)[0]
    return coef[0], coef[1], coef[2]


def _grow_fit(pos, a, b, tol, *, origin=None):
    """Index the columns and fit origin, a and b, from the middle outwards."""
    centre = np.median(pos, axis=0)
    if origin is None:
        origin = pos[np.argmin(np.linalg.norm(pos - centre, axis=1))]
    dist = np.linalg.norm(pos - origin, axis=1)
    step = max(np.linalg.norm(a), np.linalg.norm(b))
    radius = 3.0 * step
    lmin = min(np.linalg.norm(a), np.linalg.norm(b))
    while True:
        near = dist <= radius
        basis = np.column_stack([a, b])
        idx = np.rint(np.linalg.solve(basis, (pos - origin).T).T)
        off = np.linalg.norm(pos - origin - idx @ basis.T, axis=1)
        inl = (off <= tol * lmin) & near
        if inl.sum() >= 3 and np.linalg.matrix_rank(np.column_stack([np.ones(inl.sum()), idx[inl]])) == 3:
            o_new, a, b = _lsq(pos[inl], idx[inl])
            origin = o_new  # the origin stays the lattice point (0, 0) of the indices
        if radius >= dist.max():
            break
        radius *= 1.6
    basis = np.column_stack([a, b])
    idx = np.rint(np.linalg.solve(basis, (pos - origin).T).T)
    off = np.linalg.norm(pos - origin - idx @ basis.T, axis=1)
    inl = off <= tol * lmin
    return origin, a, b, idx, inl


def _best_split(pos, values, idx, inl, a, b, *, is_types):
    """The index-2 superlattice along which every second column differs, if any."""
    use = np.flatnonzero(inl)
    if len(use) < 8:
        return None
    v = values[use]
    if not is_types:
        # take out slow trends (thickness, a wedge): compare each column with its neighbourhood
        tree = cKDTree(pos[use])
        reach = 2.6 * max(np.linalg.norm(a), np.linalg.norm(b))
        local = np.array([np.median(v[nb]) for nb in tree.query_ball_point(pos[use], reach)])
        v = v / np.where(local != 0, local, 1.0)
    ij = idx[use].astype(np.int64)
    options = (
        ((ij[:, 0] % 2), (2 * a, b), a),
        ((ij[:, 1] % 2), (a, 2 * b), b),
        (((ij[:, 0] + ij[:, 1]) % 2), (a + b, a - b), a),
    )
    best, best_score = None, 0.0
    for cls, vectors, flip in options:
        v0, v1 = v[cls == 0], v[cls == 1]
        if len(v0) < 3 or len(v1) < 3:
            continue
        if is_types:
            # share of columns whose type is their class's majority type
            m0, m1 = np.round(np.median(v0)), np.round(np.median(v1))
            score = (np.sum(v0 == m0) + np.sum(v1 == m1)) / len(v) if m0 != m1 else 0.0
            ok = score >= 0.9
            bright0 = np.median(v0) < np.median(v1)  # type 0 on the origin's site
        else:
            spread = np.sqrt(0.5 * (np.var(v0) + np.var(v1)))
            score = abs(np.mean(v0) - np.mean(v1)) / max(spread, 1e-12 * abs(np.mean(v)))
            ok = score >= MIN_CLASS_SEPARATION
            bright0 = np.mean(v0) > np.mean(v1)
        if ok and score > best_score:
            best_score = score
            # the origin (indices 0, 0) is in class 0; move it to the brighter class (type 0)
            best = (vectors[0], vectors[1], np.zeros(2) if bright0 else flip)
    return best
