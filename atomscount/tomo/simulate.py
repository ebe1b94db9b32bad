"""Tilt series of an atomic model: every atom a 3D Gaussian, projected analytically.

A 3D Gaussian projects to a 2D Gaussian of the same width and integral, so each
projection is a sum of 2D Gaussians, each pixel getting the exact integral over its
area (error functions): no voxels, no aliasing. An atom's integral is its element's
HAADF cross-section: from a :class:`~atomscount.library.LinearModel` (per-atom SCS),
a dict, or by default ``0.0188 Å² (Z / 79)^1.7``, a Z-power law anchored on the
shipped Au [001] linear model. Its width is ``sqrt(B / (8 π²) + blur²)``, from the
B-factor (thermal smearing) and the probe blur.
"""

from __future__ import annotations

import warnings

import numpy as np

from .._checks import check_integer, check_memory, check_positive, check_rng
from . import _kernels
from .geometry import TiltSeries, euler_angles, rotation_matrices

__all__ = ["simulate_tilt_series", "element_strengths", "Z_POWER", "Z_ANCHOR"]

#: Exponent of the default Z-power law of HAADF cross-sections.
Z_POWER = 1.7
#: (Z, SCS [Å²]) the default power law passes through: Au in the shipped Au/Ag [001] linear model.
Z_ANCHOR = (79, 0.0188)


def element_strengths(symbols, strengths=None) -> np.ndarray:
    """Integrated strength [Å²] of each atom: from ``strengths`` (a dict of element to value, or a
    LinearModel with ``per_atom``) or the default Z-power law."""
    from ase.data import atomic_numbers

    symbols = [str(s) for s in symbols]
    if strengths is None:
        return np.array([Z_ANCHOR[1] * (atomic_numbers[s] / Z_ANCHOR[0]) ** Z_POWER for s in symbols])
    if hasattr(strengths, "per_atom") and hasattr(strengths, "elements"):
        table = dict(zip(strengths.elements, np.asarray(strengths.per_atom, dtype=float), strict=True))
    else:
        table = {str(k): float(v) for k, v in dict(strengths).items()}
    missing = sorted(set(symbols) - set(table))
    if missing:
        raise ValueError(f"strengths has no value for {missing} (it has {sorted(table)})")
    return np.array([table[s] for s in symbols])


def simulate_tilt_series(atoms, angles, *, pixel_size_angstrom: float, shape=None, symbols=None, strengths=None,
                         b_factor: float = 0.5, probe_blur_angstrom: float = 0.0, dose_e_per_angstrom2=None,
                         background: float = 0.0, shift_sigma_angstrom: float = 0.0, angle_sigma_deg: float = 0.0,
                         rng=None) -> TiltSeries:  # fmt: skip
    """Project an atomic model at the given angles.

    Parameters
    ----------
    atoms : ase.Atoms or array_like (n, 3)
        Positions [Å] (about the origin: it is the centre of every image) and, for
        ``ase.Atoms``, the elements.
    angles : array_like (k,) or (k, 3)
        Single-axis tilts or ZYZ Euler triples [degrees] (:mod:`.geometry`).
    pixel_size_angstrom : float
    shape : (rows, cols), optional
        Default: square, wide enough for the model and five atom widths at every angle.
    symbols : sequence of str, optional
        Elements when ``atoms`` is an array.
    strengths : dict or LinearModel, optional
        Integrated strength [Å²] per element (default: the Z-power law).
    b_factor : float
        Debye-Waller B [Å²]: a Gaussian of variance B / (8 π²) per atom.
    probe_blur_angstrom : float
        Standard deviation [Å] of the probe, added in quadrature.
    dose_e_per_angstrom2 : float, optional
        Poisson noise at this dose per projection (images in fractions of the beam per pixel).
    background : float
        Constant added to every pixel (fraction of the beam) before the noise.
    shift_sigma_angstrom, angle_sigma_deg : float
        Misalignment: random shifts of each projection and errors of each angle
        (the stored angles are the nominal ones; the true shifts and angles go in
        ``provenance``).
    rng : numpy.random.Generator, int or None

    Returns
    -------
    TiltSeries
        Images in fractions of the incident beam per pixel.

    Warns
    -----
    UserWarning
        When atom centres fall outside the field of view (``shape``) in any projection.
    """
    pixel = check_positive(pixel_size_angstrom, "pixel_size_angstrom")
    b_factor = check_positive(b_factor, "b_factor", allow_zero=True)
    blur = check_positive(probe_blur_angstrom, "probe_blur_angstrom", allow_zero=True)
    background = check_positive(background, "background", allow_zero=True)
    gen = check_rng(rng)
    if hasattr(atoms, "get_chemical_symbols"):
        pos = np.asarray(atoms.positions, dtype=np.float64)
        symbols = atoms.get_chemical_symbols()
    else:
        pos = np.asarray(atoms, dtype=np.float64)
        if symbols is None:
            raise ValueError("symbols are needed when atoms is an array of positions")
    if pos.ndim != 2 or pos.shape[1] != 3 or len(pos) == 0 or not np.all(np.isfinite(pos)):
        raise ValueError(f"atoms must hold finite (n, 3) positions with n >= 1, got shape {pos.shape}")
    if len(symbols) != len(pos):
        raise ValueError(f"symbols has {len(symbols)} entries for {len(pos)} atoms")
    amp = element_strengths(symbols, strengths)
    sigma = np.full(len(pos), np.sqrt(b_factor / (8.0 * np.pi**2) + blur**2))
    if np.any(sigma <= 0):
        raise ValueError("b_factor and probe_blur_angstrom cannot both be 0 (atoms would be points)")
    nominal = euler_angles(angles)
    angle_sigma = check_positive(angle_sigma_deg, "angle_sigma_deg", allow_zero=True)
    # the angle errors fall on the angles in use (a single-axis series keeps φ = ψ = 0)
    true_angles = nominal + gen.normal(0.0, angle_sigma, nominal.shape) * (nominal != 0) if angle_sigma else nominal
    shifts = gen.normal(0.0, check_positive(shift_sigma_angstrom, "shift_sigma_angstrom", allow_zero=True),
                        (len(nominal), 2)) if shift_sigma_angstrom else np.zeros((len(nominal), 2))  # fmt: skip
    if shape is None:
        n = int(np.ceil(2.0 * (np.max(np.linalg.norm(pos, axis=1)) + 5.0 * sigma.max()) / pixel)) + 4
        shape = (n, n)
    if np.ndim(shape) != 1 or len(shape) != 2:
        raise ValueError(f"shape must be (rows, cols), got {shape!r}")
    shape = tuple(check_integer(s, "shape", low=1) for s in shape)
    check_memory(8.0 * len(nominal) * shape[0] * shape[1], f"{len(nominal)} projections of {shape[0]}x{shape[1]} "
                 "pixels (the field holds every atom: are the positions in Å, about the origin?)")  # fmt: skip
    rot = rotation_matrices(true_angles)
    images = np.zeros((len(nominal), *shape))
    half = 0.5 * pixel * np.array(shape[::-1])  # the field's half-widths along x and y [Å]
    outside = np.zeros((len(nominal), len(pos)), dtype=bool)  # atom centres off the field, per projection
    for k in range(len(nominal)):
        q = pos @ rot[k].T
        _kernels.render_gaussians(q[:, 0] + shifts[k, 0], q[:, 1] + shifts[k, 1], amp, sigma, pixel, images[k])
        outside[k] = np.any(np.abs(q[:, :2] + shifts[k]) > half, axis=1)
    if outside.any():
        empty = ": every atom, in every projection" if outside.all() else ""
        warnings.warn(f"{int(outside.any(axis=0).sum())} of {len(pos)} atoms lie outside the field of view "
                      f"({shape[0]}x{shape[1]} pixels of {pixel:g} Å about the origin) in "
                      f"{int(outside.any(axis=1).sum())} of {len(nominal)} projections{empty}; centre the model "
                      "on the origin or enlarge shape", stacklevel=2)  # fmt: skip
    images /= pixel**2  # integrals [Å²] per pixel -> fractions of the beam per pixel
    images += background
    if dose_e_per_angstrom2 is not None:
        dose = check_positive(dose_e_per_angstrom2, "dose_e_per_angstrom2")
        per_pixel = dose * pixel**2
        images = gen.poisson(images * per_pixel) / per_pixel
    provenance = {"source": "atomscount.tomo.simulate_tilt_series", "n_atoms": len(pos), "b_factor": b_factor,
                  "probe_blur_angstrom": blur, "dose_e_per_angstrom2": dose_e_per_angstrom2,
                  "background": background, "strengths": {s: float(a) for s, a in zip(symbols, amp, strict=True)},
                  "true_shifts_angstrom": shifts.tolist(), "true_angles_deg": true_angles.tolist()}  # fmt: skip
    return TiltSeries(images, nominal, pixel, provenance)
