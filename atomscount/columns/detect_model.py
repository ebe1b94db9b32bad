"""Model-based column detection: fit, test every column's existence, add residual peaks, repeat.

The detector needs no threshold. A column exists when the model with it is
preferred by the Bayesian information criterion (BIC) over the model without
it; for one column of three parameters (x, y, height) on ``N`` pixels that is

    2 (log L_with - log L_without) > 3 ln N,

which for a small change of the likelihood is the squared significance of the
column's height, ``(eta / sigma_eta)^2 > 3 ln N``. Existing columns are tested
with the height's standard error from the joint fit (neighbours that could take
over its intensity are allowed for); candidates are the peaks of the residual
filtered with the fitted column shape (the matched filter), whose value is the
same statistic for a column added there with everything else held. The noise
is that of the fit: Poisson-like (variance proportional to the model) for an
image of counts, uniform otherwise. See Fatermans et al., PRL 121, 056101 (2018)
for the model-order view of column detection.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree
from skimage.feature import peak_local_max

from .._checks import check_2d_image, check_integer, check_positive
from ..image import HAADFImage
from ..io import read_hdf5, write_hdf5
from .detect import _enforce_spacing, check_distance

__all__ = ["ColumnDetection", "detect_columns"]

_KIND = "ColumnDetection"
#: Fraction of the column spacing below which two peaks are one column.
MIN_DISTANCE_FRACTION = 0.7


@dataclasses.dataclass(frozen=True, repr=False)
class ColumnDetection:
    """Result of :func:`detect_columns`.

    Attributes
    ----------
    positions : ndarray (n, 2)
        Detected columns (x, y) [Å], from the last fit.
    significance : ndarray (n,)
        ``eta / sigma_eta`` of each column in the last fit.
    penalty : float
        The BIC threshold on the squared significance, ``3 ln N``.
    spacing_angstrom : float or None
        Column spacing estimated from the image (None when ``min_distance_angstrom`` was given).
    min_distance_angstrom : float
    n_initial : int
        Local maxima the search started from.
    added, removed : ndarray (k, 2)
        Positions added at residual peaks, and removed (insignificant, merged or
        failed), over all rounds.
    n_rounds : int
    pixel_size_angstrom : float
    image_shape : (int, int)
    notes : list of str
    """

    positions: np.ndarray
    significance: np.ndarray
    penalty: float
    spacing_angstrom: float | None
    min_distance_angstrom: float
    n_initial: int
    added: np.ndarray
    removed: np.ndarray
    n_rounds: int
    pixel_size_angstrom: float
    image_shape: tuple
    notes: list = dataclasses.field(default_factory=list)

    _ARRAYS = ("positions", "significance", "added", "removed")

    def __post_init__(self):
        for name in self._ARRAYS:
            arr = np.array(getattr(self, name), dtype=np.float64)
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)
        object.__setattr__(self, "image_shape", tuple(int(s) for s in self.image_shape))

    @property
    def n_columns(self) -> int:
        return len(self.positions)

    def summary(self) -> dict:
        return {"n_columns": self.n_columns, "n_initial": int(self.n_initial), "n_added": len(self.added),
                "n_removed": len(self.removed), "n_rounds": int(self.n_rounds),
                "spacing_angstrom": self.spacing_angstrom, "min_distance_angstrom": float(self.min_distance_angstrom),
                "penalty": float(self.penalty), "notes": list(self.notes)}  # fmt: skip

    def __repr__(self) -> str:
        return (f"ColumnDetection(n_columns={self.n_columns}, added={len(self.added)}, removed={len(self.removed)}, "
                f"rounds={self.n_rounds})")  # fmt: skip

    def to_hdf5(self, path) -> None:
        attrs = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in self._ARRAYS}
        attrs["image_shape"] = list(self.image_shape)
        write_hdf5(path, _KIND, {k: getattr(self, k) for k in self._ARRAYS}, attrs)

    @classmethod
    def from_hdf5(cls, path) -> ColumnDetection:
        arrays, attrs = read_hdf5(path, _KIND, result_type=cls)
        return cls(**attrs, **{k: arrays[k].reshape(-1, 2) if k != "significance" else arrays[k]
                               for k in cls._ARRAYS})  # fmt: skip


def detect_columns(
    image: HAADFImage,
    *,
    min_distance_angstrom: float | None = None,
    max_rounds: int = 6,
    noise: str | None = None,
    exclude_border_angstrom: float = 0.0,
    progress: bool = False,
) -> ColumnDetection:
    """Find the atomic columns of an image without a threshold, by model selection.

    1. Estimate the column spacing from the autocorrelation
       (:func:`~atomscount.columns.lattice.estimate_spacing`) unless
       ``min_distance_angstrom`` is given; columns may come as close as 0.7 times
       the spacing.
    2. Start from the local maxima of the image smoothed by a sixth of that
       distance that the same criterion supports against the background alone
       (noise maxima in vacuum would only burden the first fit).
    3. Fit all columns jointly (:func:`~atomscount.fit_columns`, shared width).
    4. Remove the columns that the BIC does not support (see the module
       docstring), that failed in the fit, or that merged with a stronger one.
    5. Add a column at every peak of the matched-filtered residual that the BIC
       supports and that is at least the minimum distance from every column.
    6. Repeat 3-5 until nothing changes, at most ``max_rounds`` times.

    Parameters
    ----------
    image : HAADFImage
        Normalised or raw counts; a background is fitted.
    min_distance_angstrom : float, optional
        Smallest distance between two columns [Å]; by default 0.7 times the
        estimated spacing.
    max_rounds : int
        Most fit-test-add rounds.
    noise : {"poisson", "gaussian"}, optional
        Noise model of the fits. Default: "poisson" when no pixel is negative (an
        image of counts, raw or normalised), else "gaussian".
    exclude_border_angstrom : float
        Drop columns closer than this to the image edge at the end [Å].
    progress : bool
        Show a progress bar over the rounds.

    Returns
    -------
    ColumnDetection

    Raises
    ------
    ValueError
        When the image shows no lattice or its columns are not resolved
        (spacing under 2 pixels), unless ``min_distance_angstrom`` is given.

    References
    ----------
    .. [1] Fatermans, J. et al., Phys. Rev. Lett. 121, 056101 (2018). :doi:`10.1103/PhysRevLett.121.056101`

    Examples
    --------
    >>> from atomscount.columns.model import ColumnModel, add_poisson_noise, square_lattice
    >>> pos = square_lattice((80, 80), 0.1, 1.6)
    >>> heights = np.where(np.arange(len(pos)) % 3 == 0, 0.05, 0.4)   # some columns 8x fainter
    >>> img = ColumnModel((80, 80), 0.1, pos, heights=heights, widths=0.4, background=(0.01,)).image()
    >>> det = detect_columns(HAADFImage(add_poisson_noise(img, dose_e_per_angstrom2=1e5,
    ...                                                   pixel_size_angstrom=0.1, rng=0), 0.1))
    >>> det.n_columns == len(pos)
    True
    """
    from tqdm.auto import tqdm

    from .fit import WEAK, failed_columns, fit_columns
    from .lattice import estimate_spacing

    if not isinstance(image, HAADFImage):
        raise TypeError(f"image must be a HAADFImage, got {type(image).__name__}")
    data = check_2d_image(image.data, "image.data", allow_nonfinite=True)
    max_rounds = check_integer(max_rounds, "max_rounds", low=1)
    check_distance(min_distance_angstrom, "min_distance_angstrom", image, optional=True)
    check_distance(exclude_border_angstrom, "exclude_border_angstrom", image, allow_zero=True)
    pixel = image.pixel_size_angstrom
    finite = np.isfinite(data)
    if noise is None:
        noise = "poisson" if np.all(data[finite] >= 0) else "gaussian"
    elif noise not in ("poisson", "gaussian"):
        raise ValueError(f"noise must be one of ['gaussian', 'poisson'], got {noise!r}")
    notes = []
    spacing = None
    if not finite.any() or np.ptp(data[finite]) == 0:
        warnings.warn("image is flat: no columns found", stacklevel=2)
        return ColumnDetection(np.zeros((0, 2)), np.zeros(0), float("nan"), None,
                               float(min_distance_angstrom or 0.0), 0, np.zeros((0, 2)), np.zeros((0, 2)), 0, pixel,
                               data.shape, ["image is flat: no columns found"])  # fmt: skip
    if min_distance_angstrom is None:
        spacing = estimate_spacing(image)
        dmin = MIN_DISTANCE_FRACTION * spacing
        notes.append(f"column spacing {spacing:.3f} Å estimated from the autocorrelation; "
                     f"minimum distance {dmin:.3f} Å")  # fmt: skip
    else:
        dmin = check_positive(min_distance_angstrom, "min_distance_angstrom")
        if dmin < 2 * pixel:
            raise ValueError(f"min_distance_angstrom must be at least 2 pixels ({2 * pixel:g} Å), got {dmin}")
    n_pix = int(finite.sum())
    penalty = 3.0 * np.log(n_pix)
    sm = ndimage.gaussian_filter(np.where(finite, data, np.nanmedian(data)), dmin / 6.0 / pixel)
    peaks = peak_local_max(sm, min_distance=max(1, int(round(0.25 * dmin / pixel))), exclude_border=False)
    peaks = _enforce_spacing(peaks, sm[peaks[:, 0], peaks[:, 1]], dmin / pixel) if len(peaks) else peaks
    n_maxima = len(peaks)
    if len(peaks):
        peaks = peaks[_significant_maxima(np.where(finite, data, np.nanmedian(data)), peaks, dmin / pixel, penalty,
                                          noise)]  # fmt: skip
    positions = image.to_angstrom(peaks.astype(np.float64)) if len(peaks) else np.zeros((0, 2))
    n_initial = len(positions)
    added, removed, rejected = [], [], []
    scale = np.inf
    fit = None
    rounds = 0
    with warnings.catch_warnings():
        # each round's fit warns about the columns this search is about to remove
        warnings.simplefilter("ignore")
        for rounds in tqdm(range(1, int(max_rounds) + 1), desc="detecting columns", unit="round",
                           disable=not progress, leave=False):  # fmt: skip
            if len(positions) == 0:
                break
            fit = fit_columns(image, positions, noise=noise, mask_invalid=True, tol=0.3, max_iter=50, voronoi=False,
                              keep_residual=True, max_shift_angstrom=0.5 * dmin)  # fmt: skip
            # The fit scales its errors by the reduced chi-square, which columns not yet found
            # inflate (on a dark background, enormously), and so does a poor background in
            # early rounds. The noise does not change from round to round: judge every column
            # by the smallest robust scale seen so far.
            model = fit.model().image()
            shape = _variance_shape(fit, model)
            scale = min(scale, _noise_scale(fit, shape))
            var = _candidate_variance(fit, scale, model, shape)
            z = fit.heights / fit.heights_error * np.sqrt(fit.reduced_chi2 / scale)
            # Two columns closer than the minimum distance share one peak (or one is the other's
            # shoulder), and their heights' errors, inflated by the sharing, make neither look
            # significant: keep the taller one, untested until the next round's fit without the other.
            ok = ~failed_columns(fit, ignore=(WEAK,))  # the BIC below judges significance
            away, survivor = _merge_pairs(fit.positions, np.where(ok, fit.heights, -np.inf), dmin)
            insignificant = ~(np.isfinite(z) & (z * z > penalty)) & ~survivor
            keep = ok & ~away & ~insignificant
            removed.extend(fit.positions[~keep])
            rejected.extend(fit.positions[ok & (away | insignificant)])
            lost = len(positions) - fit.n_columns  # dropped by the fit as outside the image
            kept = fit.positions[keep]
            z_kept = z[keep]
            # a candidate the joint fit found insignificant is not offered again (no add-remove cycles)
            new = np.zeros((0, 2))
            if rounds < max_rounds:
                new = _residual_peaks(fit, var, kept, dmin, penalty)
                if len(new) and rejected:
                    d, _ = cKDTree(np.array(rejected)).query(new)
                    new = new[d >= dmin]
                # refused candidates stay eligible: a neighbourhood that changes may accept one later
                new, _ = _confirm(image, new, kept, dmin, penalty, scale, noise, float(np.median(fit.widths)))
            added.extend(new)
            positions = np.vstack([kept, new]) if len(new) else kept
            if not ((~keep).any() or len(new) or lost or survivor.any()):
                break
        else:
            if (~keep).any() or lost or survivor.any():
                notes.append(f"the search had not settled after max_rounds = {max_rounds}")
    z = z_kept if fit is not None else np.zeros(0)
    if exclude_border_angstrom > 0 and len(positions):
        inner = image.contains(positions, margin_angstrom=-float(exclude_border_angstrom))
        notes.append(f"dropped {int((~inner).sum())} columns within {exclude_border_angstrom} Å of the edge")
        positions, z = positions[inner], z[inner]
    added_arr = np.array(added).reshape(-1, 2)
    removed_arr = np.array(removed).reshape(-1, 2)
    notes.append(f"{n_initial} of {n_maxima} local maxima significant over the background; "
                 f"{len(added_arr)} columns added at residual peaks and {len(removed_arr)} removed "
                 f"(BIC: (height / error)^2 < {penalty:.1f}, failed or merged) "
                 f"in {rounds} rounds; {len(positions)} columns")  # fmt: skip
    if len(positions) == 0:
        warnings.warn("no columns found", stacklevel=2)
    order = np.lexsort((positions[:, 0], positions[:, 1])) if len(positions) else np.zeros(0, dtype=int)
    return ColumnDetection(positions[order], z[order], float(penalty), spacing, float(dmin), n_initial, added_arr,
                           removed_arr, rounds, pixel, data.shape, notes)  # fmt: skip


def _significant_maxima(data, peaks, dmin_px, penalty, noise):
    """Which local maxima the BIC supports against a background-only model (round zero).

    Noise maxima in vacuum would only burden the first joint fit. The background is
    the local minimum over two minimum distances, smoothed; the noise variance is
    Poisson-like (proportional to the smoothed image) or uniform, scaled by a robust
    estimate from the pixel-to-pixel scatter; a column is taken as a Gaussian of
    width ``dmin / 3.5`` (a fifth of the spacing, about 0.4 Å for 2 Å).
    """
    sm = ndimage.gaussian_filter(data, 1.0)
    bg = ndimage.gaussian_filter(ndimage.minimum_filter(sm, size=max(3, int(round(2 * dmin_px)))), dmin_px)
    if noise == "poisson":
        shape = np.maximum(sm, 1e-3 * max(float(np.percentile(sm, 99.9)), 1e-12))
    else:
        shape = np.ones_like(sm)
    # white noise keeps 0.762 of its variance after subtracting a 1-pixel Gaussian smoothing
    scale = float(np.median((data - sm) ** 2 / shape)) / 0.454936 / 0.762
    if not scale > 0:
        return np.ones(len(peaks), dtype=bool)
    w = 1.0 / (scale * shape)
    s = max(dmin_px / 3.5, 0.5)
    num = ndimage.gaussian_filter(w * (data - bg), s, mode="constant", truncate=4.0)[peaks[:, 0], peaks[:, 1]]
    den = ndimage.gaussian_filter(w, s / np.sqrt(2), mode="constant", truncate=4.0)[peaks[:, 0], peaks[:, 1]]
    z2 = np.where(num > 0, (2 * np.pi * s * s * num) ** 2 / np.maximum(np.pi * s * s * den, 1e-300), 0.0)
    return z2 > penalty


def _merge_pairs(positions, heights, radius):
    """Columns closer than ``radius``: (removed, survivors), the taller of each pair surviving."""
    away = np.zeros(len(positions), dtype=bool)
    survivor = np.zeros(len(positions), dtype=bool)
    if len(positions) < 2:
        return away, survivor
    pairs = cKDTree(positions).query_pairs(radius, output_type="ndarray")
    for i, j in pairs[np.argsort(-np.maximum(heights[pairs[:, 0]], heights[pairs[:, 1]]))] if len(pairs) else []:
        if away[i] or away[j]:
            continue
        lo, hi = (i, j) if heights[i] < heights[j] else (j, i)
        away[lo] = True
        survivor[hi] = True
    return away, survivor & ~away


def _variance_shape(fit, model):
    """The noise variance of each pixel up to the scale: the model (floored) for Poisson noise, else 1."""
    if fit.noise != "poisson":
        return np.where(np.isfinite(fit.residual), 1.0, np.inf)
    valid = np.isfinite(fit.residual)
    floor = 1e-3 * max(float(np.percentile(model[valid], 99.9)), 1e-12)
    return np.where(valid, np.maximum(model, floor), np.inf)


def _candidate_variance(fit, scale, model, shape):
    """Noise variance plus the model's own error, for judging new columns.

    Real columns are not Gaussians, and at high counts the misfit of their tails
    outweighs the noise: a Gaussian-only test would add a "column" on the flank of
    every bright one. The misfit is taken as proportional to the column signal
    ``s`` (the model less its background), ``var = scale * shape + (kappa s)^2``,
    with ``kappa^2`` the median excess of the squared residual over the noise,
    relative to ``s^2``, where the columns are bright (s over a fifth of its 99th
    percentile).
    """
    from .model import background_plane

    valid = np.isfinite(fit.residual)
    n_bg = 3 if fit.background_model == "plane" else 1
    signal = model - background_plane(fit.image_shape, fit.pixel_size_angstrom, fit.background[:n_bg])
    bright = valid & (signal > 0.2 * np.percentile(signal[valid], 99))
    kappa2 = 0.0
    if bright.sum() > 10:
        excess = (fit.residual[bright] ** 2 - scale * shape[bright]) / signal[bright] ** 2
        kappa2 = max(float(np.median(excess)), 0.0)
    return scale * shape + kappa2 * np.maximum(signal, 0.0) ** 2


def _noise_scale(fit, shape):
    """A robust reduced chi-square: the median squared normalised residual over that of chi-square(1).

    Columns not yet modelled, a few per cent of the pixels, do not inflate it.
    """
    valid = np.isfinite(fit.residual)
    r = fit.residual[valid]
    scale = float(np.median(r * r / shape[valid])) / 0.454936
    return scale if scale > 0 else max(float(fit.reduced_chi2), 1e-300)


def _confirm(image, candidates, kept, dmin, penalty, scale, noise, width):
    """Test each candidate in a joint fit of its neighbourhood; return (accepted, refused).

    The residual's matched filter holds every other column fixed, which flatters a
    candidate on the flank of a bright column (its tails are not Gaussian): fitted
    together, the two share the intensity. A candidate stays only if, refitted with
    its neighbours on a crop of radius twice the minimum distance plus three
    widths, its height is still significant by the BIC and it stays the minimum
    distance from every neighbour.
    """
    from .fit import WEAK, failed_columns, fit_columns

    if len(candidates) == 0:
        return candidates, []
    pixel = image.pixel_size_angstrom
    tree = cKDTree(kept) if len(kept) else None
    ok = []
    refused = []
    half = 2.0 * dmin + 1.5
    ny, nx = image.shape
    for cand in candidates:
        c0 = max(0, int(np.floor((cand[0] - half) / pixel)))
        c1 = min(nx, int(np.ceil((cand[0] + half) / pixel)) + 1)
        r0 = max(0, int(np.floor((cand[1] - half) / pixel)))
        r1 = min(ny, int(np.ceil((cand[1] + half) / pixel)) + 1)
        origin = np.array([c0, r0]) * pixel
        # every kept column of the square crop, and those just outside whose flanks reach in
        near = kept[tree.query_ball_point(cand, np.sqrt(2) * half + dmin)] if tree is not None else np.zeros((0, 2))
        pos = np.vstack([near, cand]) - origin
        crop = HAADFImage(image.data[r0:r1, c0:c1], pixel)
        try:
            local = fit_columns(crop, pos, noise=noise, mask_invalid=True, tol=0.3, max_iter=30, voronoi=False,
                                max_shift_angstrom=0.5 * dmin, width_init_angstrom=width)  # fmt: skip
        except (ValueError, np.linalg.LinAlgError, FloatingPointError):
            refused.append(cand)
            continue
        if local.n_columns == 0 or local.input_index[-1] != len(pos) - 1:  # the crop dropped the candidate
            refused.append(cand)
            continue
        z = local.heights[-1] / local.heights_error[-1] * np.sqrt(local.reduced_chi2 / scale)
        others = local.positions[:-1]
        far = len(others) == 0 or np.min(np.hypot(*(others - local.positions[-1]).T)) >= dmin
        if not failed_columns(local, ignore=(WEAK,))[-1] and np.isfinite(z) and z * z > penalty and far:
            ok.append(local.positions[-1] + origin)
        else:
            refused.append(cand)
    return np.array(ok).reshape(-1, 2), refused


def _residual_peaks(fit, var, kept, dmin, penalty):
    """Positions (x, y) [Å] where a column added to the fit's residual passes the BIC.

    With weights ``w = 1 / var`` and the unit-height column ``G`` of the fitted
    width, a column at p has ``eta = sum(w r G) / sum(w G^2)`` and squared
    significance ``sum(w r G)^2 / sum(w G^2)``: two Gaussian filterings.
    """
    pixel = fit.pixel_size_angstrom
    r = np.nan_to_num(fit.residual, nan=0.0)
    w = 1.0 / np.maximum(var, 1e-300)
    s = float(np.median(fit.widths)) / pixel
    num = 2 * np.pi * s * s * ndimage.gaussian_filter(w * r, s, mode="constant", truncate=4.0)
    den = np.pi * s * s * ndimage.gaussian_filter(w, s / np.sqrt(2), mode="constant", truncate=4.0)
    z2 = np.where((num > 0) & (den > 0), num * num / np.maximum(den, 1e-300), 0.0)
    cand = peak_local_max(z2, min_distance=max(1, int(round(0.25 * dmin / pixel))), threshold_abs=penalty,
                          exclude_border=False)  # fmt: skip
    if len(cand) == 0:
        return np.zeros((0, 2))
    cand = _enforce_spacing(cand, z2[cand[:, 0], cand[:, 1]], dmin / pixel)
    xy = cand[:, ::-1].astype(np.float64) * pixel
    if len(kept):
        d, _ = cKDTree(kept).query(xy)
        xy = xy[d >= dmin]
    return xy
