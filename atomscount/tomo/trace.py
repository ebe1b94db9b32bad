"""Atom tracing in a reconstructed volume.

1. Local maxima of the volume (optionally upsampled), above a threshold, brightest
   first, each at least ``min_distance_angstrom`` from every brighter one kept.
2. Each refined to sub-voxel precision by a 3D Gaussian fitted to its 3 x 3 x 3
   neighbourhood: a quadratic in the logarithm of the voxels (10 coefficients, one
   least-squares solve shared by every atom), whose vertex is the centre and whose
   curvature gives the widths and the fitted integral.
3. A box integral as well: the voxels within ``integration_radius_angstrom`` of the
   refined centre.
4. A last pass of the minimum-distance rule on the refined positions.

Without a given minimum distance the data set it: the atoms are first traced
``PROVISIONAL_DISTANCE`` apart, and the minimum distance is ``0.8`` times the onset
of the first peak of the radial distribution of the clearly bright maxima (those
above a fifth of the 99th percentile: the noise maxima, which crowd at small
distances, stay out). The same bright maxima tell whether a lattice explains the
positions (:func:`~.structure.detect_lattice`), which decides whether
:func:`~.refine.refine_atoms` proposes lattice sites.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from .._checks import check_3d_volume, check_choice, check_integer, check_positive, check_real
from .reconstruct import Volume
from .structure import detect_lattice, lattice_order, nearest_neighbour_distance

__all__ = ["TracedAtoms", "sample_volume", "trace_atoms"]

#: Minimum distance [Å] of the first tracing when the data set the final one.
PROVISIONAL_DISTANCE = 1.5
#: Used when too few bright maxima make a radial distribution [Å].
FALLBACK_DISTANCE = 2.0


@dataclasses.dataclass(frozen=True, repr=False)
class TracedAtoms:
    """Atoms traced in a volume, brightest first.

    Attributes
    ----------
    positions : ndarray (n, 3)
        x, y, z [Å] in the volume's frame (:mod:`._kernels`: centred on the origin).
    intensity_box : ndarray (n,)
        Sum of the voxels within the integration radius, times the voxel volume.
    intensity_fit : ndarray (n,)
        Integral of the fitted 3D Gaussian (NaN where the fit failed: a flat or saddle neighbourhood).
    peak : ndarray (n,)
        The local maximum's voxel value.
    profiles : ndarray (n, 27)
        The 3 x 3 x 3 voxels around each atom (for the local reclassification).
    pixel_size_angstrom : float
    labels : ndarray (n,) of int, optional
        Class of each atom, set by :func:`~.classify.classify_atoms`.
    class_names : tuple of str
    strength, strength_error : ndarray (n,), optional
        Each atom's integral [Å²] fitted to the projections, and its standard error,
        set by :func:`~.refine.refine_atoms`.
    refinement : dict
        What the refinement found: the atoms' width, the R1 factor of the model's
        projections, and per round the χ², the candidates and the atoms added.
    tracing : dict
        How the atoms were traced: ``min_distance_angstrom`` (given or from the data, and
        ``min_distance_source``), ``lattice`` ("crystal" or "none") and how it was decided
        (``lattice_source``: "given" or "detected", with ``lattice_order``).
    """

    positions: np.ndarray
    intensity_box: np.ndarray
    intensity_fit: np.ndarray
    peak: np.ndarray
    profiles: np.ndarray
    pixel_size_angstrom: float
    labels: np.ndarray | None = None
    class_names: tuple = ()
    strength: np.ndarray | None = None
    strength_error: np.ndarray | None = None
    refinement: dict = dataclasses.field(default_factory=dict)
    tracing: dict = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.positions)

    def __repr__(self) -> str:
        if self.labels is None:
            return f"TracedAtoms({len(self)} atoms)"
        counts = ", ".join(f"{int(np.sum(self.labels == k))} {n}" for k, n in enumerate(self.class_names))
        return f"TracedAtoms({len(self)} atoms: {counts})"

    def elements(self) -> np.ndarray:
        """Class name of each atom (requires labels)."""
        if self.labels is None:
            raise ValueError("these atoms are not classified yet: run classify_atoms")
        return np.asarray(self.class_names, dtype=object)[self.labels]

    def to_atoms(self, *, drop=("non-atom",)):
        """An ase.Atoms of the classified atoms, without the classes named in ``drop``."""
        from ase import Atoms

        el = self.elements()
        keep = ~np.isin(el, list(drop))
        return Atoms(symbols=[str(e) for e in el[keep]], positions=self.positions[keep])

    def write_xyz(self, path) -> Path:
        """Extended XYZ of the classified atoms with their intensities (written atomically)."""
        import ase.io

        from ..io import atomic_path

        el = self.elements()
        keep = el != "non-atom"
        atoms = self.to_atoms()
        atoms.arrays["intensity_box"] = self.intensity_box[keep]
        atoms.arrays["intensity_fit"] = self.intensity_fit[keep]
        if self.strength is not None:
            atoms.arrays["strength"] = self.strength[keep]
            atoms.arrays["strength_error"] = self.strength_error[keep]
        with atomic_path(path) as tmp:
            ase.io.write(str(tmp), atoms, format="extxyz")
        return Path(path)


def _design():
    g = np.array([(dz, dy, dx) for dz in (-1, 0, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1)], dtype=np.float64)
    z, y, x = g.T
    m = np.stack([np.ones(27), x, y, z, x * x, y * y, z * z, x * y, y * z, x * z], axis=1)
    return np.linalg.pinv(m)


_PINV = _design()


def _gaussian_refine(profiles, pixel):
    """Centre offset (n, 3) in voxels (x, y, z) and fitted integral of a Gaussian through each 3x3x3 profile."""
    logs = np.log(np.maximum(profiles, 1e-30 * np.max(profiles, axis=1, keepdims=True) + 1e-300))
    c = logs @ _PINV.T  # (n, 10): a, bx, by, bz, cxx, cyy, czz, cxy, cyz, cxz
    h = np.empty((len(c), 3, 3))
    h[:, 0, 0], h[:, 1, 1], h[:, 2, 2] = 2 * c[:, 4], 2 * c[:, 5], 2 * c[:, 6]
    h[:, 0, 1] = h[:, 1, 0] = c[:, 7]
    h[:, 1, 2] = h[:, 2, 1] = c[:, 8]
    h[:, 0, 2] = h[:, 2, 0] = c[:, 9]
    g = c[:, 1:4]
    offset = np.full((len(c), 3), np.nan)
    integral = np.full(len(c), np.nan)
    det = np.linalg.det(h)
    # a maximum: the Hessian of the log is negative definite
    ok = np.all(np.linalg.eigvalsh(h) < 0, axis=1) & (np.abs(det) > 1e-12)
    if np.any(ok):
        off = -np.linalg.solve(h[ok], g[ok][..., None])[..., 0]
        good = np.all(np.abs(off) <= 1.0, axis=1)
        idx = np.flatnonzero(ok)[good]
        off = off[good]
        offset[idx] = off
        log_peak = c[idx, 0] + 0.5 * np.einsum("ni,ni->n", g[idx], off)
        integral[idx] = np.exp(log_peak) * (2 * np.pi) ** 1.5 / np.sqrt(-det[idx]) * pixel**3
    return offset, integral


def trace_atoms(volume: Volume, *, min_distance_angstrom: float | None = None, threshold: float | None = None,
                upsample: int = 1, integration_radius_angstrom: float = 1.0,
                lattice: str = "auto") -> TracedAtoms:  # fmt: skip
    """Trace atoms as local maxima of ``volume``, refined to sub-voxel precision.

    Parameters
    ----------
    volume : Volume
    min_distance_angstrom : float, optional
        Smallest distance between two atoms [Å] (default: from the data, 0.8 times the
        onset of the first peak of the bright maxima's radial distribution; 2.0 Å when
        fewer than 20 maxima are bright).
    threshold : float, optional
        Smallest voxel value of a maximum (default 5 % of the 99.9th percentile of
        the positive voxels: low, so that weak atoms are kept and the classification's
        non-atom class takes the noise).
    upsample : int
        Interpolate the volume by this factor (cubic spline) before tracing.
    integration_radius_angstrom : float
        Radius of the box integral [Å].
    lattice : {"auto", "crystal", "none"}
        Whether the atoms sit on a lattice: "auto" asks the bright maxima
        (:func:`~.structure.detect_lattice`); "crystal" or "none" says so. Recorded in
        ``tracing``; :func:`~.refine.refine_atoms` proposes lattice sites only for a crystal.

    Returns
    -------
    TracedAtoms
        Brightest first, with ``tracing`` set.

    Raises
    ------
    TypeError
        For a ``volume`` that is not a :class:`Volume`, or a non-numeric ``threshold``.
    ValueError
        For a volume that is not 3D, has NaN/inf voxels or fewer than 3 along an
        axis, or has no voxel above the threshold.

    Examples
    --------
    >>> import numpy as np
    >>> from atomscount.tomo import random_packing, reconstruct, simulate_tilt_series
    >>> atoms = random_packing(40, rng=0)
    >>> series = simulate_tilt_series(atoms, np.linspace(-70, 70, 15), pixel_size_angstrom=0.4, rng=0)
    >>> traced = trace_atoms(reconstruct(series, n_iter=20, progress=False))
    >>> traced.tracing["lattice"]
    'none'
    """
    if not isinstance(volume, Volume):
        raise TypeError(f"volume must be a Volume, got {type(volume).__name__}")
    check_choice(lattice, "lattice", {"auto", "crystal", "none"})
    check_3d_volume(volume.data)  # a NaN volume gave "threshold = inf", a 2D one an IndexError
    if threshold is not None:
        check_real(threshold, "threshold")
    info = {}
    if min_distance_angstrom is None:
        first = _trace(volume, PROVISIONAL_DISTANCE, threshold, upsample, integration_radius_angstrom)
        bright = first.positions[first.peak > 0.2 * np.percentile(first.peak, 99)]
        if len(bright) >= 20 and len(cKDTree(bright).query_pairs(5.0, output_type="ndarray")):
            dmin = 0.8 * nearest_neighbour_distance(bright)["onset"]
            dmin = float(np.clip(dmin, PROVISIONAL_DISTANCE, 4.0))
            info["min_distance_source"] = "data"
        else:
            dmin = FALLBACK_DISTANCE
            info["min_distance_source"] = "fallback"
    else:
        dmin = check_positive(min_distance_angstrom, "min_distance_angstrom")
        info["min_distance_source"] = "given"
    traced = _trace(volume, dmin, threshold, upsample, integration_radius_angstrom)
    info["min_distance_angstrom"] = dmin
    if lattice == "auto":
        bright = traced.positions[traced.peak > 0.2 * np.percentile(traced.peak, 99)]
        lattice = detect_lattice(bright)
        info["lattice_order"] = lattice_order(bright) if len(bright) >= 8 else 0.0
        info["lattice_source"] = "detected"
    else:
        info["lattice_source"] = "given"
    info["lattice"] = lattice
    return dataclasses.replace(traced, tracing=info)


def _trace(volume, min_distance_angstrom, threshold, upsample, integration_radius_angstrom):
    dmin = check_positive(min_distance_angstrom, "min_distance_angstrom")
    upsample = check_integer(upsample, "upsample", low=1, high=4)
    r_int = check_positive(integration_radius_angstrom, "integration_radius_angstrom")
    data = np.asarray(volume.data, dtype=np.float64)
    pixel = volume.pixel_size_angstrom
    if upsample > 1:
        data = ndimage.zoom(data, upsample, order=3)
        pixel = pixel / upsample
    positive = data[data > 0]
    if threshold is None:
        threshold = 0.05 * float(np.percentile(positive, 99.9)) if positive.size else np.inf
    radius = max(1, int(np.floor(dmin / pixel / 2.0)))
    maxed = ndimage.maximum_filter(data, size=2 * radius + 1, mode="constant", cval=-np.inf)
    interior = np.zeros(data.shape, dtype=bool)
    interior[1:-1, 1:-1, 1:-1] = True
    peaks = np.argwhere((data == maxed) & (data > threshold) & interior)
    if len(peaks) == 0:
        raise ValueError(f"no voxel of the volume is a maximum above threshold = {threshold:.4g}")
    values = data[tuple(peaks.T)]
    order = np.argsort(-values, kind="stable")
    peaks, values = peaks[order], values[order]
    # brightest first, at least dmin apart (on the voxel grid)
    keep = _min_distance(peaks[:, ::-1] * pixel, dmin)
    peaks, values = peaks[keep], values[keep]
    offsets = np.array([(dz, dy, dx) for dz in (-1, 0, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
    profiles = data[tuple((peaks[:, None, :] + offsets[None, :, :]).transpose(2, 0, 1))]
    off, integral = _gaussian_refine(profiles, pixel)
    centre = (np.array(data.shape) - 1) / 2.0  # z, y, x
    xyz_vox = peaks[:, ::-1] - centre[::-1] + np.where(np.isfinite(off), off, 0.0)
    positions = xyz_vox * pixel
    box = _box_integrals(data, peaks, positions, centre, pixel, r_int)
    keep = _min_distance(positions, dmin)
    return TracedAtoms(positions[keep], box[keep], integral[keep], values[keep], profiles[keep],
                       volume.pixel_size_angstrom)  # fmt: skip


def lattice_choice(lattice, traced: TracedAtoms):
    """Whether lattice sites are proposed for ``traced``: True, False, or None when it is to be detected
    (``lattice`` "auto" and no lattice given to :func:`trace_atoms`)."""
    if isinstance(lattice, bool):
        return lattice
    check_choice(lattice, "lattice", {"auto", "crystal", "none"})
    if lattice == "auto" and traced.tracing.get("lattice_source") == "given":
        lattice = traced.tracing["lattice"]
    return None if lattice == "auto" else lattice == "crystal"


def sample_volume(volume: Volume, positions, *, integration_radius_angstrom: float = 1.0):
    """At each position [Å]: the value of the nearest voxel, its 3 x 3 x 3 profile (27) and the box
    integral within ``integration_radius_angstrom``; positions outside the volume's interior are
    taken at the nearest interior voxel."""
    data = np.asarray(volume.data, dtype=np.float64)
    pixel = volume.pixel_size_angstrom
    pos = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    centre = (np.array(data.shape) - 1) / 2.0  # z, y, x
    vox = np.clip(np.round(pos[:, ::-1] / pixel + centre).astype(np.int64), 1, np.array(data.shape) - 2)
    offsets = np.array([(dz, dy, dx) for dz in (-1, 0, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
    profiles = data[tuple((vox[:, None, :] + offsets[None, :, :]).transpose(2, 0, 1))].reshape(len(pos), 27)
    box = _box_integrals(data, vox, pos, centre, pixel, check_positive(integration_radius_angstrom,
                                                                       "integration_radius_angstrom"))  # fmt: skip
    return data[tuple(vox.T)], profiles, box


def _min_distance(positions, dmin):
    tree = cKDTree(positions)
    alive = np.ones(len(positions), dtype=bool)
    for i in range(len(positions)):
        if not alive[i]:
            continue
        for j in tree.query_ball_point(positions[i], dmin - 1e-9):
            if j > i:
                alive[j] = False
    return np.flatnonzero(alive)


def _box_integrals(data, peaks, positions, centre, pixel, r_int, chunk=2000):
    if len(peaks) > chunk:
        return np.concatenate([_box_integrals(data, peaks[i : i + chunk], positions[i : i + chunk], centre, pixel,
                                              r_int, chunk) for i in range(0, len(peaks), chunk)])  # fmt: skip
    r = int(np.ceil(r_int / pixel)) + 1
    grid = np.arange(-r, r + 1)
    dz, dy, dx = np.meshgrid(grid, grid, grid, indexing="ij")
    rel = np.stack([dz.ravel(), dy.ravel(), dx.ravel()], axis=1)
    idx = peaks[:, None, :] + rel[None, :, :]
    inside = np.all((idx >= 0) & (idx < np.array(data.shape)), axis=2)
    idx = np.clip(idx, 0, np.array(data.shape) - 1)
    vox_xyz = (idx[..., ::-1] - centre[::-1]) * pixel
    near = np.linalg.norm(vox_xyz - positions[:, None, :], axis=2) <= r_int
    vals = data[idx[..., 0], idx[..., 1], idx[..., 2]]
    return np.sum(vals * (near & inside), axis=1) * pixel**3
