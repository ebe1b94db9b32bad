"""Column detection and editing of position lists."""

from __future__ import annotations

import warnings

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree
from skimage.feature import peak_local_max

from .._checks import check_2d_image, check_positions, check_positive
from ..image import HAADFImage
from ._peaks import _enforce_spacing, check_distance
from .detect_model import detect_columns

__all__ = ["find_columns", "add_columns", "remove_columns"]


def find_columns(
    image: HAADFImage,
    *,
    min_distance_angstrom: float | None = None,
    threshold: float | None = None,
    smoothing_angstrom: float | None = None,
    exclude_border_angstrom: float = 0.0,
    progress: bool = False,
) -> np.ndarray:
    """Find the atomic columns of an image.

    By default (no ``threshold``) the detection is model-based and needs no
    tuning: :func:`~atomscount.columns.detect_model.detect_columns` fits the
    columns, keeps those that the BIC supports and adds significant residual
    peaks until nothing changes (use it directly for the notes and the added and
    removed columns). With a ``threshold``, the plain detector: local maxima of
    the smoothed image above a relative threshold.

    Parameters
    ----------
    image : HAADFImage
    min_distance_angstrom : float, optional
        Smallest allowed distance between two columns [Å]. By default 0.7 times
        the spacing estimated from the image's autocorrelation.
    threshold : float, optional
        Use the plain detector: peaks must rise above
        ``background + threshold * (max - background)`` of the smoothed image, with the
        background taken as its 1st percentile.
    smoothing_angstrom : float, optional
        Width of the Gaussian smoothing [Å]; default ``min_distance_angstrom / 6``.
    exclude_border_angstrom : float
        Drop peaks closer than this to the image edge [Å].
    progress : bool
        Progress bar over the model-based detection's rounds.

    Returns
    -------
    ndarray, shape (n, 2)
        Column positions (x, y) [Å], refined to sub-pixel precision by the
        intensity-weighted centroid of the 3x3 neighbourhood. Empty (with a warning)
        when no column is found.

    Examples
    --------
    >>> from atomscount.columns.model import ColumnModel
    >>> m = ColumnModel((64, 64), 0.1, [[2.0, 2.0], [4.0, 4.2]], heights=[1, 1], widths=0.4)
    >>> pos = find_columns(HAADFImage(m.image(), 0.1), min_distance_angstrom=1.0, threshold=0.2)
    >>> np.round(pos, 2).tolist()
    [[2.0, 2.0], [4.0, 4.2]]
    """
    if not isinstance(image, HAADFImage):
        raise TypeError(f"image must be a HAADFImage, got {type(image).__name__}")
    if threshold is not None:
        threshold = check_positive(threshold, "threshold", allow_zero=True)
    check_distance(min_distance_angstrom, "min_distance_angstrom", image, optional=True)
    check_distance(smoothing_angstrom, "smoothing_angstrom", image, optional=True)
    check_distance(exclude_border_angstrom, "exclude_border_angstrom", image, allow_zero=True)
    if threshold is None:
        if smoothing_angstrom is not None:
            raise ValueError("smoothing_angstrom applies to the threshold detector only: pass threshold too")
        return detect_columns(image, min_distance_angstrom=min_distance_angstrom,
                              exclude_border_angstrom=exclude_border_angstrom, progress=progress).positions  # fmt: skip
    data = check_2d_image(image.data, "image.data")
    if min_distance_angstrom is None:
        from .lattice import estimate_spacing

        min_distance_angstrom = 0.7 * estimate_spacing(image)
    dmin = check_positive(min_distance_angstrom, "min_distance_angstrom")
    if not 0 <= threshold < 1:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    p = image.pixel_size_angstrom
    smooth = dmin / 6.0 if smoothing_angstrom is None else check_positive(smoothing_angstrom, "smoothing_angstrom")
    sm = ndimage.gaussian_filter(data, smooth / p)
    lo = np.percentile(sm, 1)
    hi = sm.max()
    if hi <= lo:
        warnings.warn("image is flat: no columns found", stacklevel=2)
        return np.zeros((0, 2))
    # A window as wide as the spacing would let a bright neighbour's flank hide a faint
    # column, so look for maxima in a window a quarter that size and then enforce the
    # spacing, keeping the brighter of two close peaks.
    md = max(1, int(round(0.25 * dmin / p)))
    border = max(0, int(round(exclude_border_angstrom / p)))
    peaks = peak_local_max(
        sm, min_distance=md, threshold_abs=lo + threshold * (hi - lo), exclude_border=border or False
    )
    peaks = _enforce_spacing(peaks, sm[peaks[:, 0], peaks[:, 1]], dmin / p)
    if peaks.size == 0:
        warnings.warn("no columns found; lower threshold or min_distance_angstrom", stacklevel=2)
        return np.zeros((0, 2))
    _warn_if_inverted(sm, peaks, md)
    rc = _centroid_refine(sm - lo, peaks)
    order = np.lexsort((rc[:, 1], rc[:, 0]))
    return image.to_angstrom(rc[order])


#: How much sharper (in median curvature) the minima of a smoothed image must be than its
#: peaks for it to look inverted. HAADF columns are sharp peaks over a flat background;
#: dense lattices and noise bring the two within a factor of about 2 of each other.
INVERTED_CURVATURE_RATIO = 3.0


def _warn_if_inverted(sm, peaks, md) -> None:
    """Warn when the peaks found are flat and the minima sharp: dark columns on a bright background."""
    minima = peak_local_max(-sm, min_distance=md, exclude_border=False)
    if len(minima) < 2:
        return
    lap = ndimage.laplace(sm)
    at_peaks = float(np.median(-lap[peaks[:, 0], peaks[:, 1]]))
    at_minima = float(np.median(lap[minima[:, 0], minima[:, 1]]))
    if at_minima > INVERTED_CURVATURE_RATIO * max(at_peaks, 0.0):
        warnings.warn(
            "image looks inverted: its minima are sharper than the peaks found (dark columns on a bright "
            "background?); HAADF columns are bright, so these peaks may lie between the columns: check the image "
            "(negated, or bright-field)",
            stacklevel=3,
        )


def _centroid_refine(img, peaks):
    ny, nx = img.shape
    out = peaks.astype(np.float64)
    for k, (r, c) in enumerate(peaks):
        r0, r1 = max(r - 1, 0), min(r + 2, ny)
        c0, c1 = max(c - 1, 0), min(c + 2, nx)
        patch = np.clip(img[r0:r1, c0:c1], 0, None)
        s = patch.sum()
        if s > 0:
            rr, cc = np.mgrid[r0:r1, c0:c1]
            out[k] = ((rr * patch).sum() / s, (cc * patch).sum() / s)
    return out


def add_columns(positions, new_positions, *, min_distance_angstrom: float = 0.0) -> np.ndarray:
    """Append positions (x, y) [Å], skipping any closer than ``min_distance_angstrom`` to an existing one."""
    pos = check_positions(positions, "positions")
    new = check_positions(new_positions, "new_positions")
    if min_distance_angstrom > 0 and len(pos) and len(new):
        d, _ = cKDTree(pos).query(new)
        skipped = int((d < min_distance_angstrom).sum())
        if skipped:
            warnings.warn(f"skipped {skipped} new positions closer than {min_distance_angstrom} Å", stacklevel=2)
        new = new[d >= min_distance_angstrom]
    return np.vstack([pos, new])


def remove_columns(positions, *, indices=None, near=None, radius_angstrom: float = 0.5) -> np.ndarray:
    """Remove columns by index, or those within ``radius_angstrom`` of the points ``near``."""
    pos = check_positions(positions, "positions")
    keep = np.ones(len(pos), dtype=bool)
    if indices is not None:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if np.any((idx < -len(pos)) | (idx >= len(pos))):
            raise IndexError(f"indices must be in [0, {len(pos)}), got {idx.tolist()}")
        keep[idx] = False
    if near is not None:
        pts = check_positions(near, "near")
        if len(pos) and len(pts):
            d, _ = cKDTree(pts).query(pos)
            keep &= d > radius_angstrom
    return pos[keep]
