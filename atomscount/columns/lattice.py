"""The column spacing of an image, estimated from its autocorrelation."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.feature import peak_local_max

from .._checks import check_2d_image
from ..image import HAADFImage

__all__ = ["estimate_spacing"]

#: The strongest lattice peak of the autocorrelation must stand this many times above
#: the strongest peak of the same pixels shuffled (which has no spatial order at all).
MIN_LATTICE_CONTRAST = 3.0
#: Column spacings in atomic-resolution HAADF images lie well under this [Å].
MAX_SPACING_ANGSTROM = 10.0


def estimate_spacing(image: HAADFImage) -> float:
    """Nearest-neighbour spacing of the atomic columns [Å], from the image's autocorrelation.

    The image, with its slowly varying part (the particle's outline, a background
    gradient) removed, is autocorrelated. Away from the central peak, the
    autocorrelation peaks at the lattice vectors; the spacing is the length of
    the shortest one among the strong peaks (a fifth of the strongest or more).
    A second sublattice shows there through its cross-correlation with the
    first one, unless it is much fainter (light atoms).

    Parameters
    ----------
    image : HAADFImage

    Returns
    -------
    float
        Spacing [Å].

    Raises
    ------
    ValueError
        When the image shows no lattice (no autocorrelation peak stands out), or
        when the spacing is under 2 pixels, so that the columns are not resolved.

    Examples
    --------
    >>> from atomscount.columns.model import ColumnModel, square_lattice
    >>> pos = square_lattice((96, 96), 0.1, 1.9)
    >>> img = ColumnModel((96, 96), 0.1, pos, heights=np.ones(len(pos)), widths=0.4).image()
    >>> round(estimate_spacing(HAADFImage(img, 0.1)), 1)
    1.9
    """
    if not isinstance(image, HAADFImage):
        raise TypeError(f"image must be a HAADFImage, got {type(image).__name__}")
    data = check_2d_image(image.data, "image.data", allow_nonfinite=True)
    pixel = image.pixel_size_angstrom
    finite = np.isfinite(data)
    fill = float(np.median(data[finite])) if finite.any() else 0.0
    data = np.where(finite, data, fill)
    ny, nx = data.shape
    if min(ny, nx) < 8:
        raise ValueError(f"image.data is too small to find a lattice, got shape {data.shape}")
    # high-pass: a smooth background and the particle's outline would dominate the autocorrelation
    hp = data - ndimage.gaussian_filter(data, max(2.0, 0.05 * min(ny, nx)), mode="reflect")
    hp *= np.outer(np.hanning(ny), np.hanning(nx))
    ac = _autocorrelation(hp)
    cy, cx = ny, nx
    r = np.hypot(*np.mgrid[-cy:cy, -cx:cx])
    rmax = int(min(ny, nx) // 2)
    # the central peak falls monotonically out to its first minimum: lattice peaks lie beyond
    radial = ndimage.mean(ac, labels=np.minimum(np.rint(r).astype(int), rmax + 1), index=np.arange(rmax + 1))
    dips = np.flatnonzero((radial[1:-1] <= radial[:-2]) & (radial[1:-1] <= radial[2:])) + 1
    r_in = int(dips[0]) if dips.size else 2
    win = ac[cy - rmax : cy + rmax + 1, cx - rmax : cx + rmax + 1]
    rw = r[cy - rmax : cy + rmax + 1, cx - rmax : cx + rmax + 1]
    outer = rw >= r_in
    peaks = peak_local_max(np.where(outer, win, -np.inf), min_distance=1, exclude_border=False)
    if peaks.size == 0:
        raise ValueError("no lattice found in the image (its autocorrelation has no peak away from the origin); "
                         "pass min_distance_angstrom")  # fmt: skip
    vals = win[peaks[:, 0], peaks[:, 1]]
    dist = rw[peaks[:, 0], peaks[:, 1]]
    strongest = float(vals.max())
    # the same pixels in random order: how high the autocorrelation rises by chance
    shuffled = np.random.default_rng(0).permutation(hp.ravel()).reshape(hp.shape)
    chance_ac = _autocorrelation(shuffled)[cy - rmax : cy + rmax + 1, cx - rmax : cx + rmax + 1]
    chance = float(np.abs(chance_ac[outer]).max())
    contrast = strongest / max(chance, 1e-300)
    if contrast < MIN_LATTICE_CONTRAST:
        raise ValueError(f"no lattice found in the image: its strongest autocorrelation peak is only {contrast:.2f} "
                         f"times what shuffled pixels give (a crystal gives > {MIN_LATTICE_CONTRAST:g}); "
                         "pass min_distance_angstrom")  # fmt: skip
    # A fainter sublattice still shows at the shortest spacing, through its cross-correlation
    # with the bright one (a quarter of the strongest peak for CsPbBr3's Cs and Pb-Br columns).
    strong = (vals >= 0.2 * strongest) & (vals >= MIN_LATTICE_CONTRAST * chance)
    d_px = float(np.min(dist[strong]))
    # sub-pixel: the centroid of the chosen peak's 3x3 neighbourhood
    k = int(np.flatnonzero(strong & (dist == d_px))[0])
    pr, pc = peaks[k]
    around = win[max(pr - 1, 0) : pr + 2, max(pc - 1, 0) : pc + 2]  # a peak on the window's edge: a part of it
    patch = np.clip(around - around.min(), 0, None)
    if patch.shape == (3, 3) and patch.sum() > 0:
        dy, dx = np.mgrid[-1:2, -1:2]
        pr = pr + (dy * patch).sum() / patch.sum()
        pc = pc + (dx * patch).sum() / patch.sum()
    d_px = float(np.hypot(pr - rmax, pc - rmax))
    if d_px < 2.0:
        raise ValueError(f"the columns are not resolved: the estimated spacing {d_px * pixel:.3g} Å is under 2 pixels "
                         f"(pixel_size_angstrom = {pixel:g})")  # fmt: skip
    if d_px * pixel > MAX_SPACING_ANGSTROM:
        raise ValueError(f"the estimated column spacing {d_px * pixel:.3g} Å is beyond any atomic lattice "
                         f"(pixel_size_angstrom = {pixel:g}): is this an atomic-resolution image? "
                         "Pass min_distance_angstrom to detect peaks anyway")  # fmt: skip
    return d_px * pixel


def _autocorrelation(a):
    """Linear (zero-padded) autocorrelation, zero lag at the centre of a (2 ny, 2 nx) array."""
    ny, nx = a.shape
    f = np.fft.rfft2(a, s=(2 * ny, 2 * nx))
    return np.fft.fftshift(np.fft.irfft2(np.abs(f) ** 2, s=(2 * ny, 2 * nx)))
