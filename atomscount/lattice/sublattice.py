"""Sublattices of a set of columns: :func:`find_sublattices`, :class:`Sublattices`."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from .._checks import check_integer, check_positions, check_real
from ..columns.fit import ColumnFit, fit_columns
from ..image import HAADFImage
from ..io import read_hdf5, write_hdf5
from .basis import INLIER_FRACTION, LatticeBasis, find_basis, fractional, lattice_points

__all__ = ["Sublattices", "find_sublattices"]

_KIND = "Sublattices"
#: The label of a column that lies on no site of the cell (a spurious detection, an interstitial).
OFF_LATTICE = -1
#: The type name such columns get in the fit.
OFF_LATTICE_NAME = "off lattice"
#: A site of the cell holds at least this share of the columns; rarer clusters of
#: positions in the cell are columns off the lattice.
MIN_SITE_FRACTION = 0.05


@dataclasses.dataclass(frozen=True, repr=False)
class Sublattices:
    """Result of :func:`find_sublattices`.

    Attributes
    ----------
    positions : ndarray (n, 2)
        Column positions (x, y) [Å]: those passed in (or fitted, when an image was
        given), followed by the missed columns found.
    labels : ndarray (n,) of int
        Sublattice of each column, an index into ``names``; -1 for a column on no site.
    names : tuple of str
        One name per sublattice: its site in the cell, as ``"(0, 0)"`` or
        ``"(0.5, 0.5)"`` (fractions of ``basis.a`` and ``basis.b``), with ``"#2"``
        and so on appended when SCS split one site.
    sites : ndarray (k, 2)
        Fractional coordinates of each sublattice's site in the cell.
    basis : LatticeBasis
        The lattice of the whole cell.
    added : ndarray (n,) of bool
        True for a column that detection missed, predicted by the lattice and kept
        because a fit there gives a significant SCS.
    fit : ColumnFit or None
        The fit of all columns with one width per sublattice (its ``types`` name the
        sublattices); None when no image was given.
    n_tested : int
        Number of predicted positions tested against the image.
    """

    positions: np.ndarray
    labels: np.ndarray
    names: tuple
    sites: np.ndarray
    basis: LatticeBasis
    added: np.ndarray
    fit: ColumnFit | None = None
    n_tested: int = 0

    def __post_init__(self):
        pos = check_positions(self.positions)
        n = len(pos)
        for name in ("labels", "added"):
            if np.shape(getattr(self, name)) != (n,):
                raise ValueError(f"{name} must have length {n}, got {np.shape(getattr(self, name))}")
        for name, v in (("positions", pos), ("labels", np.asarray(self.labels, dtype=np.int64)),
                        ("added", np.asarray(self.added, dtype=bool)),
                        ("sites", np.asarray(self.sites, dtype=np.float64).reshape(-1, 2))):  # fmt: skip
            v = np.array(v)
            v.flags.writeable = False
            object.__setattr__(self, name, v)
        object.__setattr__(self, "names", tuple(str(s) for s in self.names))
        if len(self.names) != len(self.sites):
            raise ValueError(f"names must have one entry per site ({len(self.sites)}), got {len(self.names)}")

    @property
    def n_columns(self) -> int:
        return len(self.labels)

    def type_names(self) -> np.ndarray:
        """The sublattice name of every column (``"off lattice"`` for label -1), for ``fit_columns(types=...)``."""
        names = np.array([*self.names, OFF_LATTICE_NAME], dtype=object)
        return names[self.labels].astype(str)

    def summary(self) -> dict:
        """Plain-type summary: columns per sublattice, columns added, the basis."""
        out = {
            "n_columns": self.n_columns,
            "columns_per_sublattice": {nm: int(np.sum(self.labels == k)) for k, nm in enumerate(self.names)},
            "n_off_lattice": int(np.sum(self.labels == OFF_LATTICE)),
            "n_added": int(self.added.sum()),
            "n_tested": int(self.n_tested),
            "basis": self.basis.summary(),
        }
        if self.fit is not None:
            out["widths_angstrom"] = self.fit.summary().get("widths_by_type", {})
        return out

    def to_hdf5(self, path) -> None:
        """Write every field, the basis and the fit included, to ``path`` (atomically)."""
        arrays = {"positions": self.positions, "labels": self.labels, "sites": self.sites, "added": self.added,
                  "basis_a": self.basis.a, "basis_b": self.basis.b, "basis_origin": self.basis.origin}  # fmt: skip
        attrs = {"names": list(self.names), "n_tested": int(self.n_tested),
                 "basis": {k: getattr(self.basis, k) for k in ("rms_angstrom", "n_fitted", "supercell")},
                 "fit": None}  # fmt: skip
        if self.fit is not None:
            fit = self.fit
            arrays.update({f"fit_{name}": getattr(fit, name) for name in ColumnFit._ARRAYS})
            fa = {f.name: getattr(fit, f.name) for f in dataclasses.fields(fit) if f.name not in ColumnFit._ARRAYS}
            fa["type_names"], fa["image_shape"] = list(fit.type_names), list(fit.image_shape)
            attrs["fit"] = fa
        write_hdf5(path, _KIND, arrays, attrs)

    @classmethod
    def from_hdf5(cls, path) -> Sublattices:
        """Read a file written by :meth:`to_hdf5`."""
        arrays, attrs = read_hdf5(path, _KIND)
        basis = LatticeBasis(a=arrays["basis_a"], b=arrays["basis_b"], origin=arrays["basis_origin"],
                             **attrs["basis"])  # fmt: skip
        fit = None
        if attrs["fit"] is not None:
            kw = dict(attrs["fit"])
            kw["type_names"], kw["image_shape"] = tuple(kw["type_names"]), tuple(kw["image_shape"])
            for name in ColumnFit._ARRAYS:
                kw[name] = arrays[f"fit_{name}"] if f"fit_{name}" in arrays else None
            kw["converged"] = np.asarray(kw["converged"], dtype=bool)
            fit = ColumnFit(**kw)
        return cls(positions=arrays["positions"], labels=arrays["labels"], names=tuple(attrs["names"]),
                   sites=arrays["sites"], basis=basis, added=np.asarray(arrays["added"], dtype=bool), fit=fit,
                   n_tested=int(attrs["n_tested"]))  # fmt: skip

    def __repr__(self) -> str:
        per = ", ".join(f"{nm}: {int(np.sum(self.labels == k))}" for k, nm in enumerate(self.names))
        return (f"Sublattices(n_columns={self.n_columns}, {per}, off lattice: "
                f"{int(np.sum(self.labels == OFF_LATTICE))}, added: {int(self.added.sum())})")  # fmt: skip


def find_sublattices(
    fit_or_positions,
    *,
    image: HAADFImage | None = None,
    intensities=None,
    types=None,
    n_sublattices: int | None = None,
    extra_sites=None,
    find_missing: bool = True,
    min_significance: float = 3.0,
    tolerance: float = INLIER_FRACTION,
) -> Sublattices:
    """Find the lattice of a set of columns and sort the columns into its sublattices.

    1. The lattice of the whole cell comes from :func:`find_basis`, which doubles
       the cell where every second column is brighter (a perovskite's A and B
       columns, which their positions alone do not tell apart).
    2. Each column's position in the cell (its fractional coordinates modulo 1)
       falls near one of a few sites; each site is a sublattice. A column far from
       every site is labelled -1 (off lattice). With ``n_sublattices`` larger than
       the number of sites, the site whose SCS split best into two groups is split
       (two-means on the logarithm of the SCS), until there are as many.
    3. With an ``image``, the lattice points of each site where no column was
       found are predicted (shifted by the mean displacement of their neighbours on
       the same site) and tested: all columns are fitted together, and a predicted
       column is kept if its fit converges with an SCS at least
       ``min_significance`` standard errors above zero, near the predicted place.
    4. With an ``image``, the columns are fitted with one Gaussian width per
       sublattice (:func:`~atomscount.fit_columns` with ``types`` the sublattices).

    Parameters
    ----------
    fit_or_positions : ColumnFit or array_like (n, 2)
        A fit (its positions and SCS are used) or column positions (x, y) [Å].
    image : HAADFImage, optional
        The image, to test the predicted columns and fit per sublattice.
    intensities : array_like (n,), optional
        Per-column brightness (SCS [Å²]) when positions are given; a fit brings its SCS.
    types : array_like (n,), optional
        Known column types; they take the place of the intensities in doubling the cell.
    n_sublattices : int, optional
        The number of sublattices, when more than the sites of the cell (SCS tell them apart).
    extra_sites : array_like (k, 2), optional
        Fractional coordinates in the cell found (of ``basis.a`` and ``basis.b``)
        of sites where detection found no column at all, to be tested against the
        image, e.g. ``[(0.5, 0.5)]`` for the faint B columns of a perovskite whose
        A columns alone were detected. A site where no column is confirmed is dropped.
    find_missing : bool
        Look for the columns detection missed (needs ``image``).
    min_significance : float
        Least SCS / standard error of a predicted column that is kept.
    tolerance : float
        Largest distance of a column from its site, as a fraction of the shortest
        distance between columns, in (0, 0.5).

    Returns
    -------
    Sublattices

    Examples
    --------
    >>> g = np.stack(np.meshgrid(np.arange(6.0), np.arange(6.0)), -1).reshape(-1, 2)
    >>> pos = np.vstack([g * 3.9, (g + 0.5) * 3.9]) + 2.0
    >>> scs = np.r_[np.full(36, 10.0), np.full(36, 4.0)]
    >>> sub = find_sublattices(pos, intensities=scs)
    >>> sub.names, np.bincount(sub.labels).tolist()
    (('(0, 0)', '(0.5, 0.5)'), [36, 36])
    """
    if isinstance(fit_or_positions, ColumnFit):
        pos = np.asarray(fit_or_positions.positions, dtype=np.float64)
        if intensities is None and types is None:
            scs = np.asarray(fit_or_positions.scs, dtype=np.float64)
            finite = np.isfinite(scs)
            # a failed column's SCS may be NaN: it takes the middle value and does not sway the split
            intensities = np.where(finite, scs, np.median(scs[finite]) if finite.any() else 1.0)
    else:
        pos = check_positions(fit_or_positions, "fit_or_positions")
    if image is not None and not isinstance(image, HAADFImage):
        raise TypeError(f"image must be a HAADFImage or None, got {type(image).__name__}")
    if n_sublattices is not None:
        n_sublattices = check_integer(n_sublattices, "n_sublattices", low=1)
    if intensities is None and types is None and image is not None:
        intensities = _peak_values(image, pos)
    min_sig = check_real(min_significance, "min_significance", low=0.0)
    tol = check_real(tolerance, "tolerance", low=0.0, high=0.5, open_low=True, open_high=True)
    basis = find_basis(pos, intensities=intensities, types=types, tolerance=tol)
    spacing = _shortest_distance(pos)
    radius = tol * spacing
    sites = _find_sites(fractional(pos, basis), basis, radius)
    labels = _assign(pos, basis, sites, radius)
    names = [_site_name(s) for s in sites]
    if n_sublattices is not None and n_sublattices > len(sites):
        if intensities is None:
            raise ValueError(f"n_sublattices={n_sublattices} is more than the {len(sites)} sites of the cell, and "
                             "without intensities (or SCS) nothing tells columns on one site apart")  # fmt: skip
        labels, sites, names = _split_by_intensity(labels, sites, names, np.asarray(intensities, float), n_sublattices)
    if extra_sites is not None:
        extra = np.asarray(extra_sites, dtype=np.float64).reshape(-1, 2)
        if not np.all(np.isfinite(extra)):
            raise ValueError(f"extra_sites must be finite fractional coordinates, got {extra_sites!r}")
        if image is None or not find_missing:
            raise ValueError("extra_sites are tested against the image: give image= (and find_missing=True)")
        for site in extra % 1.0:
            if len(sites) and _torus_distance(sites, site, basis).min() <= radius:
                continue  # a site the columns already show
            sites = np.vstack([sites, site])
            names.append(_site_name(site))
    added = np.zeros(len(pos), bool)
    n_tested = 0
    fit = None
    if image is not None:
        if find_missing:
            cand, cand_labels = _predict_missing(pos, labels, basis, sites, image, radius)
            n_tested = len(cand)
        else:
            cand, cand_labels = np.zeros((0, 2)), np.zeros(0, np.int64)
        pos, labels, added, fit = _fit_and_test(image, pos, labels, names, cand, cand_labels, min_sig, radius)
        empty = [k for k in range(len(sites)) if not np.any(labels == k)]
        if empty and extra_sites is not None:  # an extra site where no column was confirmed
            keep = [k for k in range(len(sites)) if k not in empty]
            relabel = np.full(len(sites) + 1, -1)
            relabel[keep] = np.arange(len(keep))
            labels = relabel[labels]
            sites, names = sites[keep], [names[k] for k in keep]  # the fit has no column of theirs either
        # the fitted positions are more precise than detected ones: the lattice again from them
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            on_site = labels >= 0
            if on_site.sum() >= 5:
                refined = find_basis(pos[on_site], types=labels[on_site], tolerance=tol)
                # the same cell, its origin on the same site: the sites' fractional coordinates hold
                same = np.allclose(refined.matrix, basis.matrix, rtol=0, atol=0.05 * spacing)
                shift = fractional(refined.origin[None], basis)[0]
                if same and refined.supercell == basis.supercell and np.allclose(shift, np.rint(shift), atol=0.1):
                    basis = refined
    return Sublattices(positions=pos, labels=labels, names=tuple(names), sites=sites, basis=basis, added=added,
                       fit=fit, n_tested=n_tested)  # fmt: skip


def _peak_values(image, pos):
    """The image, smoothed over about a pixel, at each position: a brightness to tell sublattices apart."""
    data = np.where(np.isfinite(image.data), image.data, np.nanmedian(image.data))
    smooth = ndimage.gaussian_filter(data, 1.0)
    rc = image.to_pixels(pos)
    return ndimage.map_coordinates(smooth, rc.T, order=1, mode="nearest")


def _shortest_distance(pos):
    return float(np.median(cKDTree(pos).query(pos, k=2)[0][:, 1]))


def _torus_distance(f, site, basis):
    """Distances [Å] from fractional coordinates to a site, modulo the lattice."""
    d = f - site
    d -= np.rint(d)
    return np.linalg.norm(d @ basis.matrix.T, axis=1)


def _find_sites(f, basis, radius):
    """The sites of the cell: dense clusters of the columns' fractional coordinates modulo 1."""
    rng = np.random.default_rng(0)
    sample = f if len(f) <= 3000 else f[rng.choice(len(f), 3000, replace=False)]
    left = np.ones(len(sample), bool)
    sites = []
    while left.sum() >= max(3, MIN_SITE_FRACTION * len(sample)):
        idx = np.flatnonzero(left)
        counts = np.array([np.sum(_torus_distance(sample[idx], sample[k], basis) <= radius) for k in idx])
        k = idx[np.argmax(counts)]
        if counts.max() < max(3, MIN_SITE_FRACTION * len(sample)):
            break
        members = idx[_torus_distance(sample[idx], sample[k], basis) <= radius]
        d = sample[members] - sample[k]
        d -= np.rint(d)
        centre = (sample[k] + d.mean(axis=0)) % 1.0
        sites.append(centre)
        left[members] = False
    sites = np.array(sites).reshape(-1, 2)
    # the origin's site first (the basis puts its origin on a column), then by position in the cell
    sites = np.where(np.abs(sites - np.rint(sites)) < 1e-9, 0.0, sites)
    first = np.argmin(_torus_distance(sites, np.zeros(2), basis))
    order = [first] + sorted((i for i in range(len(sites)) if i != first), key=lambda i: tuple(np.round(sites[i], 3)))
    return sites[order]


def _site_name(site):
    def fmt(v):
        # a site within 0.05 of a simple fraction (twelfths: halves, thirds, quarters) is named by it
        twelfths = np.rint(v * 12.0)
        v = twelfths / 12.0 if abs(v * 12.0 - twelfths) < 0.6 else v
        v = float(np.round(v, 2)) % 1.0
        return "0" if v in (0.0, 1.0) else f"{v:.2g}"

    return f"({fmt(site[0])}, {fmt(site[1])})"


def _assign(pos, basis, sites, radius):
    f = fractional(pos, basis)
    dist = np.stack([_torus_distance(f, s, basis) for s in sites], axis=1)
    labels = np.argmin(dist, axis=1).astype(np.int64)
    labels[dist[np.arange(len(pos)), labels] > radius] = -1
    return labels


def _split_by_intensity(labels, sites, names, values, n_wanted):
    """Split sites in two by SCS (two-means on log SCS) until there are ``n_wanted`` sublattices."""
    labels = labels.copy()
    sites, names = list(sites), list(names)
    logv = np.log(np.clip(values, 1e-300, None))
    while len(sites) < n_wanted:
        best = None
        for k in range(len(sites)):
            v = logv[labels == k]
            if len(v) < 4:
                continue
            lo, hi, cut = _two_means(v)
            spread = np.sqrt(0.5 * (np.var(v[v <= cut]) + np.var(v[v > cut])))
            score = (hi - lo) / max(spread, 1e-12)
            if best is None or score > best[0]:
                best = (score, k, cut)
        if best is None:
            raise ValueError(f"n_sublattices={n_wanted}: no site has enough columns to split by SCS")
        _, k, cut = best
        new = len(sites)
        labels[(labels == k) & (logv > cut)] = new
        sites.append(sites[k])
        names.append(f"{names[k]}#{sum(nm.startswith(names[k]) for nm in names) + 1}")
    return labels, np.array(sites), names


def _two_means(v):
    cut = float(np.median(v))
    for _ in range(50):
        lo, hi = v[v <= cut].mean(), v[v > cut].mean() if np.any(v > cut) else v.max()
        new = 0.5 * (lo + hi)
        if new == cut:
            break
        cut = new
    return lo, hi, cut


def _predict_missing(pos, labels, basis, sites, image, radius):
    """Lattice points of each site inside the image without a column, shifted as their neighbours are."""
    ny, nx = image.shape
    p = image.pixel_size_angstrom
    margin = radius  # a column that far inside shows enough of itself to be fitted
    if (nx - 1) * p <= 2 * margin or (ny - 1) * p <= 2 * margin:
        return np.zeros((0, 2)), np.zeros(0, np.int64)
    # lattice points a little beyond the edges too: shifted as their neighbours are, some come inside
    region = (-margin, (nx - 1) * p + margin, -margin, (ny - 1) * p + margin)
    tree = cKDTree(pos)
    # each column's displacement from its lattice point: the lattice bends and the scan drifts
    on = np.flatnonzero(labels >= 0)
    if len(on) < 3:
        return np.zeros((0, 2)), np.zeros(0, np.int64)
    f = fractional(pos[on], basis) - sites[labels[on]]
    shift_all = pos[on] - basis.cartesian(np.rint(f) + sites[labels[on]])
    cand, cand_labels = [], []
    for k, site in enumerate(sites):
        ideal = lattice_points(basis, region, sites=[site])
        if len(ideal) == 0:
            continue
        free = tree.query(ideal, k=1)[0] > 2.0 * radius
        if not free.any():
            continue
        # borrow the displacement of the nearest columns on the site (on any site, for a site with none yet)
        use = labels[on] == k if np.sum(labels[on] == k) >= 3 else np.ones(len(on), bool)
        near = cKDTree(pos[on][use]).query(ideal[free], k=min(4, int(use.sum())))[1].reshape(int(free.sum()), -1)
        moved = ideal[free] + shift_all[use][near].mean(axis=1)
        inside = image.contains(moved, margin_angstrom=-margin)
        cand.append(moved[inside])
        cand_labels.append(np.full(int(inside.sum()), k, np.int64))
    if not cand:
        return np.zeros((0, 2)), np.zeros(0, np.int64)
    return np.concatenate(cand), np.concatenate(cand_labels)


def _fit_and_test(image, pos, labels, names, cand, cand_labels, min_sig, radius):
    all_names = np.array([*names, OFF_LATTICE_NAME], dtype=object)
    n0 = len(pos)
    trial_pos = np.vstack([pos, cand])
    trial_labels = np.concatenate([labels, cand_labels])
    with warnings.catch_warnings():
        # columns near the edge or merged duplicates are the fit's own business; it reports them
        warnings.simplefilter("ignore", UserWarning)
        fit = fit_columns(image, trial_pos, types=all_names[trial_labels].astype(str), width="shared")
    keep_cand = np.zeros(len(cand), bool)
    if len(cand):
        where = {int(i): r for r, i in enumerate(fit.input_index)}
        for c in range(len(cand)):
            r = where.get(n0 + c)
            if r is None:
                continue
            sig = fit.scs[r] / fit.scs_error[r] if fit.scs_error[r] > 0 else 0.0
            moved = np.linalg.norm(fit.positions[r] - cand[c])
            keep_cand[c] = bool(fit.converged[r]) and sig >= min_sig and moved <= 2.0 * radius
        if not keep_cand.all():
            trial_pos = np.vstack([pos, cand[keep_cand]])
            trial_labels = np.concatenate([labels, cand_labels[keep_cand]])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                fit = fit_columns(image, trial_pos, types=all_names[trial_labels].astype(str), width="shared")
    added_in = np.r_[np.zeros(n0, bool), np.ones(int(keep_cand.sum()), bool)]
    out_labels = trial_labels[fit.input_index]
    return np.asarray(fit.positions), out_labels, added_in[fit.input_index], fit
