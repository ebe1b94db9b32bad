"""Model-based column detection: a linear model of every candidate, each tested for its existence.

The detector needs no threshold. Every local maximum of the lightly smoothed
image is a candidate. With a shared Gaussian width (scanned for the best fit)
and a smooth background, the heights of all candidates are one sparse linear
least-squares problem, solved jointly, so that a candidate on a bright
neighbour's flank gets only what the neighbour does not explain. A candidate
is a column when

* its height is significant by the Bayesian information criterion (BIC): for
  one column of three parameters on ``N`` pixels, ``(eta / sigma_eta)^2 > 3 ln N``
  (Fatermans et al., PRL 121, 056101 (2018)), with ``sigma_eta`` from the local
  noise, which is measured from the image's own pixel-to-pixel scatter about the
  model (a variance ``a + b * intensity``: read-out and shot noise, and, in a
  noise-free simulation, the model's misfit), and
* its height is at least a fraction (:data:`MIN_RELATIVE_HEIGHT`) of the
  brightest column within :data:`NEIGHBOURHOOD` spacings, and a smaller fraction
  (:data:`MIN_GLOBAL_HEIGHT`) of the image's bright columns (a larger one,
  :data:`MIN_ISOLATED_HEIGHT`, when no column is near): the tails of a real
  probe are not Gaussian and leave weak maxima beside bright columns (at
  0.5-1 % of their peaks), while the faintest real column, one atom beside a
  thick neighbour, is still a few per cent of it.

Before the tests, the columns' tails beyond the Gaussian (one radial profile,
non-negative, scaled by each column's height, fitted away from every candidate)
are taken out of the image, so that a real probe's rings explain themselves.
Peaks of the matched-filtered residual then add the columns that have no maximum
of their own (a faint column on a bright one's flank), tested the same way, for
up to ``max_rounds`` rounds. Everything is computed on the image rescaled to its
1st-99.9th percentile range, so that the result is the same for any brightness
and offset. There are no non-linear fits: the detection of a 5,000-column image
takes seconds, and :func:`~atomscount.fit_columns` refines the positions.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
from scipy import ndimage, sparse
from scipy.optimize import nnls
from scipy.sparse.linalg import spsolve
from scipy.spatial import cKDTree
from skimage.feature import peak_local_max

from .._checks import check_2d_image, check_integer, check_positive
from ..image import HAADFImage
from ..io import read_hdf5, write_hdf5
from ._noise import affine_variance
from ._peaks import _enforce_spacing, check_distance

__all__ = ["ColumnDetection", "detect_columns"]

_KIND = "ColumnDetection"
#: Fraction of the column spacing below which two peaks are one column.
MIN_DISTANCE_FRACTION = 0.7
#: A candidate with no other column within :data:`NEIGHBOURHOOD` spacings must reach this
#: fraction of the image's bright columns: maxima of an amorphous support or of the
#: vacuum are alone, while a crystal's columns, even at its edge, have neighbours.
MIN_ISOLATED_HEIGHT = 0.05
#: A column's height must reach this fraction of the brightest column near it.
MIN_RELATIVE_HEIGHT = 0.015
#: ... and this fraction of the image's bright columns (the 99th percentile of the
#: significant heights): one atom is about 2 % of a 40-atom column, while a maximum in the
#: vacuum of a noise-free simulation is about 0.1 %.
MIN_GLOBAL_HEIGHT = 0.004
#: "Near", for :data:`MIN_RELATIVE_HEIGHT`: within this many column spacings.
NEIGHBOURHOOD = 2.5
#: Widths scanned for the shared Gaussian, as fractions of the minimum distance.
_WIDTH_GRID = np.geomspace(0.12, 0.55, 9)
#: Columns the width scan looks at, at most.
_WIDTH_SAMPLE = 1500
#: A site predicted by the lattice is within this fraction of the spacing of a candidate.
LATTICE_TOLERANCE = 0.1
#: Shells of lattice-predicted columns accepted outwards from the significant ones.
LATTICE_SHELLS = 3
#: ... if its height reaches this fraction of the brightest significant column near it.
LATTICE_MIN_RELATIVE = 0.04
#: The background: the minimum over two minimum distances of the image smoothed by
#: ``_BG_PRESMOOTH`` of one (so that noise does not pull it down), smoothed by one.
_BG_PRESMOOTH = 0.2
#: The model's misfit is averaged over this many column widths.
_EXCESS_SMOOTH = 2.0


@dataclasses.dataclass(frozen=True, repr=False)
class ColumnDetection:
    """Result of :func:`detect_columns`.

    Attributes
    ----------
    positions : ndarray (n, 2)
        Detected columns (x, y) [Å].
    significance : ndarray (n,)
        ``eta / sigma_eta`` of each column in the last linear model.
    penalty : float
        The BIC threshold on the squared significance, ``3 ln N``.
    spacing_angstrom : float or None
        Column spacing estimated from the image (None when ``min_distance_angstrom`` was given).
    min_distance_angstrom : float
    n_initial : int
        Local maxima the search started from.
    added, removed : ndarray (k, 2)
        Positions added at residual peaks, and candidates tried and removed
        (insignificant, or too faint beside a bright neighbour), over all rounds.
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
    max_rounds: int = 3,
    noise: str | None = None,
    exclude_border_angstrom: float = 0.0,
    progress: bool = False,
) -> ColumnDetection:
    """Find the atomic columns of an image without a threshold, by model selection.

    1. Estimate the column spacing from the autocorrelation
       (:func:`~atomscount.columns.lattice.estimate_spacing`) unless
       ``min_distance_angstrom`` is given; columns may come as close as 0.7 times
       the spacing.
    2. Take every local maximum of the image smoothed by a sixth of that distance
       as a candidate, the brighter of two closer than the minimum distance.
    3. Fit the heights of all candidates jointly: Gaussians of one shared width
       (the best of a scan) on a smooth background, a sparse linear problem.
    4. Keep the candidates whose height is significant by the BIC against the
       local noise and at least :data:`MIN_RELATIVE_HEIGHT` of the brightest
       column near it (see the module docstring).
    5. Add the significant peaks of the matched-filtered residual that are the
       minimum distance from every column, and repeat 3-5 up to ``max_rounds``
       times.

    The result is the same for the image times any positive factor plus any
    offset. When no column is found it warns, saying what was tried.

    Parameters
    ----------
    image : HAADFImage
        Normalised or raw counts, in any units; a background is fitted.
    min_distance_angstrom : float, optional
        Smallest distance between two columns [Å]; by default 0.7 times the
        estimated spacing.
    max_rounds : int
        Most test-and-add rounds.
    noise : {"poisson", "gaussian"}, optional
        Kept for compatibility: the noise is measured from the image (a variance
        ``a + b * intensity`` covers both), so this is only checked.
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

    Warns
    -----
    UserWarning
        When no column is found (the message says what was tried and what to change).

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

    from .lattice import estimate_spacing

    if not isinstance(image, HAADFImage):
        raise TypeError(f"image must be a HAADFImage, got {type(image).__name__}")
    data = check_2d_image(image.data, "image.data", allow_nonfinite=True)
    max_rounds = check_integer(max_rounds, "max_rounds", low=1)
    check_distance(min_distance_angstrom, "min_distance_angstrom", image, optional=True)
    check_distance(exclude_border_angstrom, "exclude_border_angstrom", image, allow_zero=True)
    if noise is not None and noise not in ("poisson", "gaussian"):
        raise ValueError(f"noise must be one of ['gaussian', 'poisson'], got {noise!r}")
    pixel = image.pixel_size_angstrom
    finite = np.isfinite(data)
    notes = []
    spacing = None
    lo, hi = np.percentile(data[finite], [1.0, 99.9]) if finite.any() else (0.0, 0.0)
    if not hi > lo:
        hi = float(np.max(data[finite])) if finite.any() else lo
    if not finite.any() or not hi > lo:
        warnings.warn("image is flat: no columns found", stacklevel=2)
        return ColumnDetection(np.zeros((0, 2)), np.zeros(0), float("nan"), None,
                               float(min_distance_angstrom or 0.0), 0, np.zeros((0, 2)), np.zeros((0, 2)), 0, pixel,
                               data.shape, ["image is flat: no columns found"])  # fmt: skip
    # brightness and offset drop out here: every threshold below is relative
    x = np.where(finite, (data - lo) / (hi - lo), 0.0)
    if min_distance_angstrom is None:
        spacing = estimate_spacing(image)
        dmin = MIN_DISTANCE_FRACTION * spacing
        notes.append(f"column spacing {spacing:.3f} Å estimated from the autocorrelation; "
                     f"minimum distance {dmin:.3f} Å")  # fmt: skip
    else:
        dmin = check_positive(min_distance_angstrom, "min_distance_angstrom")
        if dmin < 2 * pixel:
            raise ValueError(f"min_distance_angstrom must be at least 2 pixels ({2 * pixel:g} Å), got {dmin}")
    dmin_px = dmin / pixel
    n_pix = int(finite.sum())
    penalty = 3.0 * np.log(n_pix)
    fill = float(np.median(x[finite]))
    xf = np.where(finite, x, fill)
    sm = ndimage.gaussian_filter(xf, dmin_px / 6.0)
    peaks = peak_local_max(sm, min_distance=max(1, int(round(0.25 * dmin_px))), exclude_border=False)
    peaks = _enforce_spacing(peaks, sm[peaks[:, 0], peaks[:, 1]], dmin_px) if len(peaks) else peaks
    n_initial = len(peaks)
    rc = _parabolic_refine(sm, peaks)
    cand = rc[:, ::-1] * pixel if len(rc) else np.zeros((0, 2))
    bg = _background(xf, dmin_px)
    y = np.where(finite, x - bg, 0.0)
    width = _best_width(y, finite, cand, pixel, dmin) if len(cand) else 0.4 * dmin
    if len(cand) > 3:
        y = y - _probe_tails(y, finite, cand, width, pixel, dmin / MIN_DISTANCE_FRACTION)
    ref_radius = NEIGHBOURHOOD * dmin / MIN_DISTANCE_FRACTION
    added, removed = [], []
    z = np.zeros(0)
    rounds = 0
    noise_free = False
    for rounds in tqdm(range(1, max_rounds + 1), desc="detecting columns", unit="round", disable=not progress,
                       leave=False):  # fmt: skip
        if len(cand) == 0:
            break
        a_mat = _design(cand, width, pixel, data.shape, finite)
        h, m_mat = _solve_heights(a_mat, y.ravel())
        resid = np.where(finite, y - (a_mat @ h).reshape(y.shape), np.nan)
        var, noise_free = _noise_variance(resid, xf, finite, width / pixel)
        z = h / _height_errors(a_mat, m_mat, var)
        keep = _accept(cand, h, z, penalty, ref_radius, dmin / MIN_DISTANCE_FRACTION)
        removed.extend(cand[~keep])
        if rounds == max_rounds:
            cand, z = cand[keep], z[keep]
            break
        # columns with no maximum of their own: peaks of the residual's matched filter
        cand, z = cand[keep], z[keep]
        resid = np.where(finite, y - (a_mat @ np.where(keep, h, 0.0)).reshape(y.shape), 0.0)
        new = _residual_peaks(resid, var, width / pixel, cand, dmin, pixel, penalty, removed)
        if len(new) == 0:
            break
        added.extend(new)
        cand = np.vstack([cand, new])
    if len(added) and len(removed):
        # a residual peak tried and removed in a later round is not "added"
        added_arr = np.array(added)
        d, _ = cKDTree(cand).query(added_arr) if len(cand) else (np.full(len(added_arr), np.inf), None)
        added = list(added_arr[d < 1e-9])
    notes.append(f"column width {width:.3f} Å (shared Gaussian, best of a scan); "
                 + ("no noise found in the image (a simulation?): columns judged against the model's misfit"
                    if noise_free else "noise measured from the image's pixel-to-pixel scatter"))  # fmt: skip
    if exclude_border_angstrom > 0 and len(cand):
        inner = image.contains(cand, margin_angstrom=-float(exclude_border_angstrom))
        notes.append(f"dropped {int((~inner).sum())} columns within {exclude_border_angstrom} Å of the edge")
        cand, z = cand[inner], z[inner]
    added_arr = np.array(added).reshape(-1, 2)
    removed_arr = np.array(removed).reshape(-1, 2)
    notes.append(f"{n_initial} local maxima tried; {len(added_arr)} columns added at residual peaks and "
                 f"{len(removed_arr)} removed (BIC: (height / error)^2 < {penalty:.1f}, or under "
                 f"{MIN_RELATIVE_HEIGHT:.1%} of a neighbour within {ref_radius:.2f} Å) in {rounds} rounds; "
                 f"{len(cand)} columns")  # fmt: skip
    if len(cand) == 0:
        msg = (f"no columns found: {n_initial} local maxima (minimum distance {dmin:.3g} Å) were tried and none "
               f"is significant (BIC) over the local noise. Check pixel_size_angstrom ({pixel:g} Å) and that the "
               "image is atomic-resolution; pass min_distance_angstrom if the spacing estimate is wrong, or use "
               "the threshold detector (find_columns(..., threshold=0.2), --threshold 0.2)")  # fmt: skip
        notes.append(msg)
        warnings.warn(msg, stacklevel=2)
    order = np.lexsort((cand[:, 0], cand[:, 1])) if len(cand) else np.zeros(0, dtype=int)
    return ColumnDetection(cand[order], z[order], float(penalty), spacing, float(dmin), n_initial, added_arr,
                           removed_arr, rounds, pixel, data.shape, notes)  # fmt: skip


def _parabolic_refine(img, peaks):
    """(row, col) of each peak refined to sub-pixel by a parabola through its 3-pixel cross."""
    out = peaks.astype(np.float64)
    if len(peaks) == 0:
        return out.reshape(0, 2)
    ny, nx = img.shape
    for axis, n in ((0, ny), (1, nx)):
        inner = (peaks[:, axis] > 0) & (peaks[:, axis] < n - 1)
        p = peaks[inner]
        step = np.zeros(2, dtype=int)
        step[axis] = 1
        lo = img[p[:, 0] - step[0], p[:, 1] - step[1]]
        mid = img[p[:, 0], p[:, 1]]
        hi = img[p[:, 0] + step[0], p[:, 1] + step[1]]
        curv = lo - 2 * mid + hi
        shift = np.where(curv < 0, 0.5 * (lo - hi) / np.where(curv < 0, curv, -1.0), 0.0)
        out[inner, axis] += np.clip(shift, -0.5, 0.5)
    return out


def _background(x, dmin_px):
    """A smooth background: the local minimum over two minimum distances, smoothed by one (see _BG_PRESMOOTH)."""
    lowest = ndimage.minimum_filter(
        ndimage.gaussian_filter(x, max(1.0, _BG_PRESMOOTH * dmin_px)), size=max(3, int(round(2 * dmin_px)))
    )
    return ndimage.gaussian_filter(lowest, dmin_px)


def _design(positions, width, pixel, shape, valid):
    """Sparse (pixels x columns) matrix of unit-height Gaussians of ``width`` [Å] at ``positions`` (x, y) [Å]."""
    ny, nx = shape
    s = width / pixel
    k = max(1, int(np.ceil(4.0 * s)))
    off = np.arange(-k, k + 1)
    centre = np.rint(positions[:, ::-1] / pixel).astype(np.int64)  # (row, col)
    rows = centre[:, 0, None, None] + off[None, :, None]
    cols = centre[:, 1, None, None] + off[None, None, :]
    rows, cols = np.broadcast_arrays(rows, cols)
    dy = rows - positions[:, 1, None, None] / pixel
    dx = cols - positions[:, 0, None, None] / pixel
    val = np.exp(-(dx * dx + dy * dy) / (2 * s * s))
    col_idx = np.broadcast_to(np.arange(len(positions))[:, None, None], rows.shape)
    inside = (rows >= 0) & (rows < ny) & (cols >= 0) & (cols < nx)
    rows_i, cols_i = rows[inside], cols[inside]
    ok = valid[rows_i, cols_i]
    pix = (rows_i * nx + cols_i)[ok]
    return sparse.csc_matrix((val[inside][ok], (pix, col_idx[inside][ok])), shape=(ny * nx, len(positions)))


def _solve_heights(a_mat, y):
    """Least-squares heights of the columns of ``a_mat`` for the data ``y``, and the normal matrix."""
    m_mat = (a_mat.T @ a_mat).tocsc()
    # a candidate whose Gaussian lies wholly on masked pixels has an empty row: pin it at zero
    diag = m_mat.diagonal()
    m_mat = m_mat + sparse.diags(np.where(diag > 0, 1e-12 * diag.max(initial=1.0), 1.0))
    h = spsolve(m_mat, a_mat.T @ y)
    return np.atleast_1d(h), m_mat


def _best_width(y, valid, positions, pixel, dmin):
    """The shared Gaussian width [Å] that fits ``y`` best, from a scan refined by a parabola in log width."""
    widths = _WIDTH_GRID * dmin
    widths = widths[widths >= 0.4 * pixel]
    if len(widths) < 3:
        return float(max(0.5 * pixel, 0.3 * dmin))
    if len(positions) > _WIDTH_SAMPLE:
        # one shared width: a window of about _WIDTH_SAMPLE columns about the middle tells it
        ny, nx = y.shape
        side = np.sqrt(_WIDTH_SAMPLE / len(positions))
        cy, cx = np.median(positions[:, 1]) / pixel, np.median(positions[:, 0]) / pixel
        r0, r1 = int(max(0, cy - 0.5 * side * ny)), int(min(ny, cy + 0.5 * side * ny + 1))
        c0, c1 = int(max(0, cx - 0.5 * side * nx)), int(min(nx, cx + 0.5 * side * nx + 1))
        y, valid = y[r0:r1, c0:c1], valid[r0:r1, c0:c1]
        positions = positions - [c0 * pixel, r0 * pixel]
        reach = 4 * widths[-1]  # columns just outside the window still shine into it
        inside = ((positions[:, 0] > -reach) & (positions[:, 0] < (c1 - c0) * pixel + reach)
                  & (positions[:, 1] > -reach) & (positions[:, 1] < (r1 - r0) * pixel + reach))  # fmt: skip
        positions = positions[inside]
    flat = y.ravel()
    rss = []
    for w in widths:
        a_mat = _design(positions, w, pixel, y.shape, valid)
        h, _ = _solve_heights(a_mat, flat)
        r = flat - a_mat @ h
        rss.append(float(r @ r))
    k = int(np.argmin(rss))
    if 0 < k < len(widths) - 1:
        lw = np.log(widths[k - 1 : k + 2])
        c = np.polyfit(lw, rss[k - 1 : k + 2], 2)
        if c[0] > 0:
            return float(np.exp(np.clip(-c[1] / (2 * c[0]), lw[0], lw[-1])))
    return float(widths[k])


def _probe_tails(y, valid, positions, width, pixel, spacing, n_iter=4):
    """The columns' non-Gaussian tails, as an image: one radial profile beyond the Gaussian, shared by all.

    A real probe's tails (aberrations, the aperture's rings) leave weak maxima
    beside bright columns, where a Gaussian model sees a faint column. The
    profile, in rings from 2.5 widths to two spacings, scales with each
    column's height; it is fitted to the residual jointly with the heights,
    alternating (each ring's image is the height map convolved with the ring).
    """
    from scipy.signal import fftconvolve

    r0, r1 = 2.5 * width, 2.0 * spacing
    step = max(pixel, 0.1 * spacing)
    edges = np.arange(r0, r1 + step, step)
    if len(edges) < 3:
        return np.zeros_like(y)
    k = int(np.ceil(r1 / pixel))
    rr = np.hypot(*np.mgrid[-k : k + 1, -k : k + 1]) * pixel
    # tents in r: the profile is piecewise linear between the ring centres
    rings = [np.clip(1.0 - np.abs(rr - e) / step, 0.0, None) for e in edges]
    a_mat = _design(positions, width, pixel, y.shape, valid)
    flat = y.ravel()
    tails = np.zeros_like(y)
    # The profile is fitted away from every candidate: a faint sublattice at a fixed distance
    # from the bright one would otherwise pass for a ring of the bright columns' tails.
    near = np.zeros(y.shape, dtype=bool)
    rc = np.clip(np.rint(positions[:, ::-1] / pixel).astype(int), 0, np.array(y.shape) - 1)
    near[rc[:, 0], rc[:, 1]] = True
    away = valid & (ndimage.distance_transform_edt(~near) * pixel > 2.0 * width)
    for _ in range(n_iter):
        h, _ = _solve_heights(a_mat, flat - tails.ravel())
        resid = np.where(valid, y - (a_mat @ h).reshape(y.shape), 0.0)
        impulses = np.zeros_like(y)
        np.add.at(impulses, (rc[:, 0], rc[:, 1]), np.maximum(h, 0.0))
        basis = np.stack([fftconvolve(impulses, ring, mode="same") * valid for ring in rings])
        gram = np.einsum("kij,lij->kl", basis * away, basis)
        rhs = np.einsum("kij,ij->k", basis * away, resid)
        # tails add intensity: a non-negative profile (through the Cholesky factor of the Gram matrix)
        try:
            chol = np.linalg.cholesky(gram + 1e-10 * np.trace(gram) * np.eye(len(rings)))
        except np.linalg.LinAlgError:
            return np.zeros_like(y)
        t, _ = nnls(chol.T, np.linalg.solve(chol, rhs))
        tails = np.einsum("k,kij->ij", t, basis)
    return tails


def _noise_variance(resid, intensity, valid, width_px):
    """Per-pixel noise variance ``a + b * I`` measured from the residual's pixel-to-pixel scatter.

    ``I`` is the local intensity at the scale of a column (so a lone count in
    vacuum is not a 20-sigma event). The pixels are binned by ``I`` and a robust
    variance is taken in each bin; ``a, b >= 0`` by non-negative least squares.
    Returns (variance image, whether the image looks noise-free: the scatter is
    under 1e-6 of the intensity range squared, i.e. only the model's misfit).
    """
    local = ndimage.gaussian_filter(np.where(valid, intensity, 0.0), max(width_px, 0.7))
    norm = ndimage.gaussian_filter(valid.astype(float), max(width_px, 0.7))
    local = np.maximum(local / np.maximum(norm, 1e-12), 0.0)
    r2 = np.where(valid, resid, 0.0) ** 2
    li = local[valid]
    a, b = affine_variance(li, r2[valid])
    # the model's own misfit, where it exceeds the noise (non-Gaussian tails of bright columns)
    var = a + b * local
    excess = ndimage.gaussian_filter(np.maximum(r2 - var, 0.0) * valid, _EXCESS_SMOOTH * max(width_px, 0.7))
    var = var + excess / np.maximum(norm, 1e-12)
    floor = 1e-12
    noise_free = bool(a + b * float(np.percentile(li, 90)) < 1e-6)
    return np.where(valid, np.maximum(var, floor), np.inf), noise_free


def _height_errors(a_mat, m_mat, var):
    """Standard error of each least-squares height: ``v_i [M^-1]_ii``.

    ``v_i`` is the variance the column sees, and ``[M^-1]_ii`` allows for the
    overlapping neighbours, which can take over its intensity.
    """
    g2 = a_mat.multiply(a_mat)
    vflat = var.ravel()
    v_col = np.asarray(g2.T @ np.where(np.isfinite(vflat), vflat, 0.0)).ravel() / np.maximum(
        np.asarray(g2.sum(axis=0)).ravel(), 1e-300
    )
    # [M^-1]_ii with the neighbours eliminated one by one (a Schur complement that ignores
    # the neighbours' overlaps with each other: equal to the block inverse within 1e-7 on the
    # 5,901-column Au rod, and a vector operation instead of a loop over blocks)
    m_csr = m_mat.tocsr()
    diag = m_csr.diagonal()
    coupling = np.asarray(m_csr.multiply(m_csr) @ (1.0 / diag)).ravel() - diag
    inv_diag = 1.0 / np.maximum(diag - coupling, 1e-12 * diag)
    return np.sqrt(np.maximum(v_col * inv_diag, 1e-300))


def _lattice_sites(positions, spacing):
    """Sites the columns predict: ``2 p_i - p_j`` for every pair closer than 2.5 spacings (a row continued)."""
    if len(positions) < 2:
        return np.zeros((0, 2))
    pairs = cKDTree(positions).query_pairs(2.5 * spacing, output_type="ndarray")
    if len(pairs) == 0:
        return np.zeros((0, 2))
    i, j = pairs.T
    return np.vstack([2 * positions[i] - positions[j], 2 * positions[j] - positions[i]])


def _on_lattice(points, columns, spacing):
    """Which ``points`` lie within a tenth of the spacing of a site the ``columns`` predict."""
    sites = _lattice_sites(columns, spacing)
    if len(sites) == 0 or len(points) == 0:
        return np.zeros(len(points), dtype=bool)
    d, _ = cKDTree(sites).query(points)
    return d < LATTICE_TOLERANCE * spacing


def _near(positions, h, among, radius):
    """For each position, the height of the brightest of the ``among`` columns within ``radius`` (0 if none)
    and how many of them there are."""
    brightest = np.zeros(len(positions))
    count = np.zeros(len(positions), dtype=int)
    idx = np.flatnonzero(among)
    if len(idx):
        for k, nb in enumerate(cKDTree(positions[idx]).query_ball_point(positions, radius)):
            if nb:
                brightest[k] = h[idx[nb]].max()
                count[k] = len(nb)
    return brightest, count


def _accept(positions, h, z, penalty, radius, spacing):
    """Significant (BIC) candidates at least :data:`MIN_RELATIVE_HEIGHT` of the brightest significant one near them.

    A candidate on a site that the significant columns predict (a lattice row
    continued) has a known position: one free parameter, its height, so its BIC
    penalty is a third, ``ln N``.
    """
    z2 = np.where(np.isfinite(z) & (z > 0), z * z, 0.0)
    sig = z2 > penalty
    if not sig.any():
        return sig
    for _ in range(LATTICE_SHELLS):
        more = ~sig & (z2 > penalty / 3) & _on_lattice(positions, positions[sig], spacing)
        more &= h >= LATTICE_MIN_RELATIVE * _near(positions, h, sig, radius)[0]
        if not more.any():
            break
        sig |= more
    bright = np.percentile(h[sig], 99)
    keep = sig & (h >= MIN_GLOBAL_HEIGHT * bright)
    if sig.sum() > 1:
        brightest, count = _near(positions, h, sig, radius)  # a significant candidate counts itself
        keep &= ~(sig & (h < MIN_RELATIVE_HEIGHT * brightest))
        # alone in the vacuum and faint: a bump of the support, not a column
        keep &= ~(sig & (count == 1) & (h < MIN_ISOLATED_HEIGHT * bright))
    return keep


def _residual_peaks(resid, var, s, kept, dmin, pixel, penalty, rejected):
    """Positions (x, y) [Å] where a column added to the residual passes the BIC, ``dmin`` from every column.

    With weights ``w = 1 / var`` and the unit-height column ``G`` of the
    width ``s`` [pixels], a column at p has ``eta = sum(w r G) / sum(w G^2)``
    and squared significance ``sum(w r G)^2 / sum(w G^2)``: two Gaussian filterings.
    """
    w = np.where(np.isfinite(var), 1.0 / var, 0.0)
    num = 2 * np.pi * s * s * ndimage.gaussian_filter(w * resid, s, mode="constant", truncate=4.0)
    den = np.pi * s * s * ndimage.gaussian_filter(w, s / np.sqrt(2), mode="constant", truncate=4.0)
    z2 = np.where((num > 0) & (den > 0), num * num / np.maximum(den, 1e-300), 0.0)
    cand = peak_local_max(z2, min_distance=max(1, int(round(0.25 * dmin / pixel))), threshold_abs=penalty / 3,
                          exclude_border=False)  # fmt: skip
    if len(cand) == 0:
        return np.zeros((0, 2))
    cand = _enforce_spacing(cand, z2[cand[:, 0], cand[:, 1]], dmin / pixel)
    xy = _parabolic_refine(z2, cand)[:, ::-1] * pixel
    # under the full penalty only where the lattice predicts a column (see _accept)
    strong = z2[cand[:, 0], cand[:, 1]] > penalty
    xy = xy[strong | _on_lattice(xy, kept, dmin / MIN_DISTANCE_FRACTION)]
    for others in (kept, np.asarray(rejected).reshape(-1, 2)):
        if len(others) and len(xy):
            d, _ = cKDTree(others).query(xy)
            xy = xy[d >= (dmin if others is kept else 0.5 * dmin)]
    return xy
