"""Tilt angles, rotations and the :class:`TiltSeries`.

Convention. Angles are ZYZ Euler triples (φ, θ, ψ) in degrees. Projection k rotates
the object by ``R = Rz(φ) Ry(θ) Rz(ψ)`` (active rotations: ``q = R p``) and
integrates along ``q_z``; ``q_x`` runs along the image columns and ``q_y`` along the
rows, both centred on the image. A single angle ``a`` means (0, a, 0): a tilt about
the image's y axis (its rows keep their place), the common single-axis series.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from .._checks import check_integer, check_positive, check_rng
from ..io import FileFormatError, read_hdf5, write_hdf5

__all__ = ["TiltSeries", "euler_angles", "read_tilt_series", "rotation_matrices"]

_KIND = "TiltSeries"


def euler_angles(angles) -> np.ndarray:
    """Angles as an (n, 3) array of ZYZ Euler triples [degrees]; a 1D array is a single-axis tilt series.

    Raises
    ------
    ValueError
        For angles that are not (n,) or (n, 3), empty, or not finite.
    """
    a = np.asarray(angles, dtype=np.float64)
    if a.ndim == 1:
        a = np.stack([np.zeros_like(a), a, np.zeros_like(a)], axis=1)
    if a.ndim != 2 or a.shape[1] != 3 or len(a) == 0:
        raise ValueError(f"angles must be (n,) tilts or (n, 3) ZYZ Euler triples in degrees, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError("angles must be finite")
    return a


def rotation_matrices(angles) -> np.ndarray:
    """Rotations (n, 3, 3) ``Rz(φ) Ry(θ) Rz(ψ)`` of ZYZ Euler triples [degrees] (or single-axis tilts)."""
    a = np.deg2rad(euler_angles(angles))

    def rz(t):
        c, s = np.cos(t), np.sin(t)
        z, o = np.zeros_like(t), np.ones_like(t)
        return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)

    def ry(t):
        c, s = np.cos(t), np.sin(t)
        z, o = np.zeros_like(t), np.ones_like(t)
        return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2)

    return rz(a[:, 0]) @ ry(a[:, 1]) @ rz(a[:, 2])


@dataclasses.dataclass(frozen=True, repr=False)
class TiltSeries:
    """Projections of one object at known angles.

    Attributes
    ----------
    images : ndarray (k, rows, cols)
        The projections (any linear unit: fractions of the beam per pixel, counts, ...).
    angles : ndarray (k, 3)
        ZYZ Euler triples [degrees] (see the module docstring); a 1D array given to the
        constructor is a single-axis series.
    pixel_size_angstrom : float
    provenance : dict
        How it was made (simulation settings, true shifts, file names).

    Raises
    ------
    ValueError
        For images that are not a finite (k, rows, cols) array, a number of angles
        other than k, or a pixel size that is not positive and finite.
    """

    images: np.ndarray
    angles: np.ndarray
    pixel_size_angstrom: float
    provenance: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        img = np.asarray(self.images, dtype=np.float64)
        if img.ndim != 3 or min(img.shape) == 0:
            raise ValueError(f"images must be a (k, rows, cols) array, got shape {img.shape}")
        bad = ~np.isfinite(img)
        if bad.any():
            k = int(np.flatnonzero(bad.any(axis=(1, 2)))[0])
            raise ValueError(f"images hold {int(bad.sum())} non-finite pixels (first in projection {k})")
        ang = euler_angles(self.angles)
        if len(ang) != len(img):
            raise ValueError(f"images has {len(img)} projections but angles has {len(ang)}")
        px = float(self.pixel_size_angstrom)
        if not (np.isfinite(px) and px > 0):
            raise ValueError(f"pixel_size_angstrom must be > 0, got {self.pixel_size_angstrom!r}")
        object.__setattr__(self, "images", img)
        object.__setattr__(self, "angles", ang)
        object.__setattr__(self, "pixel_size_angstrom", px)
        object.__setattr__(self, "provenance", dict(self.provenance))

    @property
    def n_projections(self) -> int:
        return len(self.images)

    @property
    def shape(self) -> tuple:
        return self.images.shape[1:]

    @property
    def rotations(self) -> np.ndarray:
        return rotation_matrices(self.angles)

    @property
    def single_axis(self) -> bool:
        """True when every projection is a tilt about the image's y axis (φ = ψ = 0)."""
        return bool(np.allclose(self.angles[:, [0, 2]], 0.0, atol=1e-9))

    def __repr__(self) -> str:
        t = self.angles[:, 1] if self.single_axis else None
        span = f"tilts {t.min():.1f}°..{t.max():.1f}°" if t is not None else "Euler angles"
        return (f"TiltSeries({self.n_projections} projections of {self.shape[0]}x{self.shape[1]} px, "
                f"{self.pixel_size_angstrom:g} Å/px, {span})")  # fmt: skip

    def to_hdf5(self, path) -> Path:
        """Write the series (atomically)."""
        write_hdf5(path, _KIND, {"images": self.images, "angles": self.angles},
                   {"pixel_size_angstrom": self.pixel_size_angstrom, "provenance": self.provenance})  # fmt: skip
        return Path(path)

    @classmethod
    def from_hdf5(cls, path) -> TiltSeries:
        arrays, attrs = read_hdf5(path, _KIND)
        return cls(arrays["images"], arrays["angles"], attrs["pixel_size_angstrom"], attrs.get("provenance", {}))


def read_tilt_series(path, *, dose_e_per_angstrom2=None, every: int = 1, rng=0) -> TiltSeries:
    """Read a tilt series: the HDF5 file :meth:`TiltSeries.to_hdf5` writes, or a NumPy ``.npz`` archive.

    An ``.npz`` archive (the shipped ``atomscount/data/fept_tilt_series.npz``, made by
    ``simulations/make_fept_tilt_series.py``) holds ``images`` (k, rows, cols), the
    angles as ``tilts_deg`` (k,) single-axis tilts or ``angles`` (k,) or (k, 3) ZYZ Euler
    triples [degrees], and ``pixel_size_angstrom``; optional ``settings`` (a JSON
    string) go into the provenance (its ``positions`` and ``symbols``, the true model,
    do not: ``atomscount tomo compare`` reads them from the archive).
    Its images are noise-free, in fractions of the beam per Å² (a pixel's expected
    count is image x dose x pixel area).

    Parameters
    ----------
    path : str or Path
        ``.npz`` for an archive; anything else is read as HDF5.
    dose_e_per_angstrom2 : float, optional
        Add Poisson noise at this dose per projection [e/Å²], the images staying in
        their unit (counts divided by dose x pixel area), as
        :func:`~.simulate.simulate_tilt_series` does. Only for noise-free images: the
        result is not meaningful for a series that is already noisy.
    every : int
        Keep every ``every``-th projection (1: all).
    rng : int or numpy.random.Generator
        Seed of the noise: the same seed and dose give the same series.

    Returns
    -------
    TiltSeries

    Raises
    ------
    ValueError
        For a file that does not exist, an archive that lacks a field, or a bad
        ``dose_e_per_angstrom2`` or ``every``.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path {str(path)!r} is not a file")
    every = check_integer(every, "every", low=1)
    if path.suffix.lower() != ".npz":
        series = TiltSeries.from_hdf5(path)
        images, angles, pixel, prov = series.images, series.angles, series.pixel_size_angstrom, series.provenance
    else:
        try:
            with np.load(path, allow_pickle=False) as z:
                fields = {k: z[k] for k in z.files}
        except (OSError, ValueError) as exc:
            raise FileFormatError(f"{str(path)!r} is not a readable .npz archive: {exc}") from exc
        key = "tilts_deg" if "tilts_deg" in fields else "angles"
        missing = [k for k in ("images", key, "pixel_size_angstrom") if k not in fields]
        if missing:
            raise ValueError(f"{str(path)!r} lacks the field(s) {missing}; it has {sorted(fields)}")
        images, angles, pixel = fields["images"], fields[key], float(fields["pixel_size_angstrom"])
        prov = {"source": str(path)}
        if "settings" in fields:
            import json

            prov["settings"] = json.loads(str(fields["settings"]))
    images = np.asarray(images, dtype=np.float64)[::every]
    angles = np.asarray(angles, dtype=np.float64)[::every]
    prov = dict(prov, every_nth_projection=every) if every > 1 else dict(prov)
    if dose_e_per_angstrom2 is not None:
        per_pixel = check_positive(dose_e_per_angstrom2, "dose_e_per_angstrom2") * float(pixel) ** 2
        if np.any(images < 0):
            raise ValueError(f"dose_e_per_angstrom2 needs non-negative images; {str(path)!r} has a minimum of "
                             f"{float(images.min()):g}")  # fmt: skip
        images = check_rng(rng).poisson(images * per_pixel) / per_pixel
        prov = dict(prov, dose_e_per_angstrom2=float(dose_e_per_angstrom2),
                    noise_seed=rng if isinstance(rng, int) else None)  # fmt: skip
    return TiltSeries(images, angles, pixel, prov)
