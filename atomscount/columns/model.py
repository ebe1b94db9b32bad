"""The Gaussian column model: plain functions, a thin description class, and noise.

The model is

.. math:: I(x, y) = b(x, y) + \\sum_i \\eta_i \\exp\\left(-\\frac{|r - r_i|^2}{2\\rho_i^2}\\right)

with a constant or plane background ``b`` and a scattering cross-section
``SCS_i = 2 pi eta_i rho_i^2`` (the volume under column ``i``) in Å² when the image
is normalised to the incident beam.

The NumPy functions here are the references for the numba kernels in
:mod:`atomscount.columns._kernels`; they evaluate every Gaussian at every pixel.
"""

from __future__ import annotations

import dataclasses

import numba
import numpy as np

from .._checks import check_positions, check_positive, check_rng
from . import _kernels

__all__ = [
    "gaussian2d",
    "ColumnModel",
    "render_dense",
    "dense_jacobian",
    "add_poisson_noise",
    "square_lattice",
    "CUTOFF_SIGMAS",
]

#: Gaussians are cut where they fall below 1e-7 of their height: sqrt(2 ln 1e7) widths.
CUTOFF_SIGMAS = float(np.sqrt(2.0 * np.log(1e7)))


def gaussian2d(x, y, *, amplitude, x0, y0, sigma):
    """A 2D isotropic Gaussian ``amplitude * exp(-((x-x0)^2 + (y-y0)^2) / (2 sigma^2))``.

    Examples
    --------
    >>> float(gaussian2d(1.0, 0.0, amplitude=2.0, x0=0.0, y0=0.0, sigma=1.0))
    1.2130613194252668
    """
    return amplitude * np.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2.0 * sigma**2))


def _pixel_grids(shape, pixel_size):
    ny, nx = shape
    return np.arange(nx) * pixel_size, np.arange(ny) * pixel_size


def background_plane(shape, pixel_size, background):
    """Evaluate ``c0 + cx (x - xc) + cy (y - yc)`` on the pixel grid (centre of the image)."""
    bg = np.zeros(3)
    bgin = np.atleast_1d(np.asarray(background, dtype=np.float64))
    bg[: bgin.size] = bgin
    xs, ys = _pixel_grids(shape, pixel_size)
    xc, yc = _image_centre(shape, pixel_size)
    return bg[0] + bg[1] * (xs[None, :] - xc) + bg[2] * (ys[:, None] - yc)


def _image_centre(shape, pixel_size):
    return 0.5 * (shape[1] - 1) * pixel_size, 0.5 * (shape[0] - 1) * pixel_size


def render_dense(shape, pixel_size, positions, heights, widths, background=0.0):
    """NumPy reference: the full model image, every Gaussian at every pixel."""
    xs, ys = _pixel_grids(shape, pixel_size)
    out = background_plane(shape, pixel_size, background)
    for (x0, y0), h, w in zip(positions, heights, widths, strict=True):
        out += gaussian2d(xs[None, :], ys[:, None], amplitude=h, x0=x0, y0=y0, sigma=w)
    return out


def dense_jacobian(shape, pixel_size, positions, heights, widths, *, types, free_width, n_bg):
    """NumPy reference: the dense Jacobian ``d model / d theta``, one row per pixel.

    Parameter order: per column ``(x, y, eta[, rho])``, then background ``(c0[, cx, cy])``,
    then (shared widths only) one width per type.
    """
    xs, ys = _pixel_grids(shape, pixel_size)
    X, Y = np.meshgrid(xs, ys)
    X = X.ravel()
    Y = Y.ravel()
    n = len(heights)
    b = 4 if free_width else 3
    n_types = 0 if free_width else int(np.max(types)) + 1 if n else 0
    J = np.zeros((X.size, n * b + n_bg + n_types))
    for i in range(n):
        x0, y0 = positions[i]
        r2 = widths[i] ** 2
        g = np.exp(-((X - x0) ** 2 + (Y - y0) ** 2) / (2 * r2))
        eg = heights[i] * g
        J[:, i * b + 0] = eg * (X - x0) / r2
        J[:, i * b + 1] = eg * (Y - y0) / r2
        J[:, i * b + 2] = g
        dr = eg * ((X - x0) ** 2 + (Y - y0) ** 2) / (r2 * widths[i])
        if free_width:
            J[:, i * b + 3] = dr
        else:
            J[:, n * b + n_bg + types[i]] += dr
    xc, yc = _image_centre(shape, pixel_size)
    J[:, n * b] = 1.0
    if n_bg == 3:
        J[:, n * b + 1] = X - xc
        J[:, n * b + 2] = Y - yc
    return J


def exp_tables(x, y, rho, cut, pixel):
    """Per-column separable Gaussian factors for the kernels (see :func:`_kernels.exp_tables`)."""
    width = int(np.ceil(2.0 * float(np.max(cut, initial=0.0)) / pixel)) + 2
    return _kernels.exp_tables(x, y, rho, cut, float(pixel), width)


class ColumnIndex:
    """Columns sorted into square bins for the kernels' neighbour search."""

    def __init__(self, shape, pixel_size, x, y, cutoff):
        cutoff = np.asarray(cutoff, dtype=np.float64)
        self.bin_size = float(max(np.max(cutoff) if cutoff.size else 1.0, pixel_size))
        self.origin_x = -self.bin_size
        self.origin_y = -self.bin_size
        self.nbx = int(np.ceil(((shape[1] - 1) * pixel_size + 2 * self.bin_size) / self.bin_size)) + 1
        self.nby = int(np.ceil(((shape[0] - 1) * pixel_size + 2 * self.bin_size) / self.bin_size)) + 1
        bx = np.clip(np.floor((x - self.origin_x) / self.bin_size), 0, self.nbx - 1).astype(np.int64)
        by = np.clip(np.floor((y - self.origin_y) / self.bin_size), 0, self.nby - 1).astype(np.int64)
        key = by * self.nbx + bx
        self.bin_cols = np.argsort(key, kind="stable").astype(np.int64)
        counts = np.bincount(key, minlength=self.nbx * self.nby)
        self.bin_start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def args(self):
        return (self.bin_start, self.bin_cols, self.nbx, self.nby, self.origin_x, self.origin_y, self.bin_size)


def render(shape, pixel_size, positions, heights, widths, background=0.0):
    """Fast model image (numba kernel, Gaussians cut at :data:`CUTOFF_SIGMAS` widths)."""
    positions = check_positions(positions)
    heights = np.ascontiguousarray(heights, dtype=np.float64)
    widths = np.ascontiguousarray(np.broadcast_to(widths, heights.shape), dtype=np.float64)
    bg = np.zeros(3)
    bgin = np.atleast_1d(np.asarray(background, dtype=np.float64))
    bg[: bgin.size] = bgin
    x = np.ascontiguousarray(positions[:, 0])
    y = np.ascontiguousarray(positions[:, 1])
    cut = CUTOFF_SIGMAS * widths
    xc, yc = _image_centre(shape, pixel_size)
    return _kernels.render_columns(
        int(shape[0]), int(shape[1]), float(pixel_size), x, y, heights, cut**2, bg, xc, yc,
        *exp_tables(x, y, widths, cut, pixel_size), render_bands(shape[0]),
    )  # fmt: skip


def render_bands(ny: int) -> int:
    """Row bands for :func:`_kernels.render_columns`: a few per thread, for balance."""
    return int(max(1, min(ny, 4 * numba.get_num_threads())))


@dataclasses.dataclass(frozen=True)
class ColumnModel:
    """A description of a column image: cheap to make, ``image()`` renders it.

    Parameters
    ----------
    shape : (int, int)
        Image shape (rows, cols).
    pixel_size_angstrom : float
        Pixel size [Å].
    positions : ndarray (n, 2)
        Column positions (x, y) [Å].
    heights : ndarray (n,)
        Peak heights eta (image units).
    widths : ndarray (n,)
        Gaussian widths rho [Å].
    background : sequence of float
        ``(c0,)`` or ``(c0, cx, cy)`` with the slopes per Å about the image centre.
    types : ndarray (n,) of int, optional
        Column type index (0..T-1); widths are shared within a type when
        ``free_width`` is False.
    free_width : bool
        Whether each column has its own width parameter.

    Examples
    --------
    >>> m = ColumnModel((32, 32), 0.1, [[1.6, 1.6]], heights=[1.0], widths=[0.4])
    >>> round(float(m.scs[0]), 4)
    1.0053
    """

    shape: tuple
    pixel_size_angstrom: float
    positions: np.ndarray
    heights: np.ndarray
    widths: np.ndarray
    background: tuple = (0.0,)
    types: np.ndarray | None = None
    free_width: bool = False

    def __post_init__(self):
        pos = check_positions(self.positions)
        n = pos.shape[0]
        h = np.asarray(self.heights, dtype=np.float64).reshape(-1)
        w = np.asarray(np.broadcast_to(np.asarray(self.widths, dtype=np.float64), (n,)), dtype=np.float64)
        if h.shape != (n,):
            raise ValueError(f"heights must have length {n} (one per column), got {h.shape}")
        if n and np.any(w <= 0):
            raise ValueError(f"widths must be > 0, got min {w.min()}")
        t = np.zeros(n, dtype=np.int64) if self.types is None else np.asarray(self.types, dtype=np.int64)
        if t.shape != (n,):
            raise ValueError(f"types must have length {n}, got {t.shape}")
        check_positive(self.pixel_size_angstrom, "pixel_size_angstrom")
        bg = tuple(float(v) for v in np.atleast_1d(self.background))
        if len(bg) not in (1, 3):
            raise ValueError(f"background must have 1 or 3 coefficients, got {len(bg)}")
        object.__setattr__(self, "positions", pos)
        object.__setattr__(self, "heights", h)
        object.__setattr__(self, "widths", w)
        object.__setattr__(self, "types", t)
        object.__setattr__(self, "background", bg)
        object.__setattr__(self, "shape", (int(self.shape[0]), int(self.shape[1])))

    @property
    def n_columns(self) -> int:
        return self.positions.shape[0]

    @property
    def scs(self) -> np.ndarray:
        """Scattering cross-sections ``2 pi eta rho^2`` [Å² when normalised]."""
        return 2.0 * np.pi * self.heights * self.widths**2

    def image(self) -> np.ndarray:
        """Render the model (numba kernel)."""
        return render(self.shape, self.pixel_size_angstrom, self.positions, self.heights, self.widths, self.background)

    def image_dense(self) -> np.ndarray:
        """Render the model with the NumPy reference (no cut-off)."""
        return render_dense(
            self.shape, self.pixel_size_angstrom, self.positions, self.heights, self.widths, self.background
        )


def add_poisson_noise(image, *, dose_e_per_angstrom2: float, pixel_size_angstrom: float, rng=None):
    """Draw Poisson counts for a normalised image and return them in image units.

    The expected count in a pixel is ``image * dose * pixel_area``.

    Parameters
    ----------
    image : ndarray
        Normalised intensities (fractions of the incident beam), must be >= 0.
    dose_e_per_angstrom2 : float
        Incident electron dose [e/Å²].
    pixel_size_angstrom : float
        [Å].
    rng : Generator, int or None
    """
    dose = check_positive(dose_e_per_angstrom2, "dose_e_per_angstrom2")
    px = check_positive(pixel_size_angstrom, "pixel_size_angstrom")
    image = np.asarray(image, dtype=np.float64)
    if not np.all(np.isfinite(image)):
        bad = int((~np.isfinite(image)).sum())
        raise ValueError(f"image must be finite for Poisson noise, got {bad} NaN/inf pixels")
    if np.any(image < 0):
        raise ValueError(f"image must be >= 0 for Poisson noise, got min {image.min()}")
    scale = dose * px * px
    # numpy's Poisson sampler takes means up to about 1e18 (int64 counts)
    if image.size and float(image.max()) * scale > 1e18:
        raise ValueError(f"dose_e_per_angstrom2 = {dose:g} gives {float(image.max()) * scale:.3g} counts in the "
                         "brightest pixel, beyond the 1e18 a Poisson draw can hold")  # fmt: skip
    return check_rng(rng).poisson(image * scale) / scale


def square_lattice(shape, pixel_size_angstrom, spacing_angstrom, *, margin_angstrom=None):
    """Positions (x, y) [Å] of a square lattice filling the image, away from its edges."""
    if margin_angstrom is None:
        margin_angstrom = 0.5 * spacing_angstrom
    w = (shape[1] - 1) * pixel_size_angstrom
    h = (shape[0] - 1) * pixel_size_angstrom
    xs = np.arange(margin_angstrom, w - margin_angstrom + 1e-9, spacing_angstrom)
    ys = np.arange(margin_angstrom, h - margin_angstrom + 1e-9, spacing_angstrom)
    X, Y = np.meshgrid(xs, ys)
    return np.column_stack([X.ravel(), Y.ravel()])
