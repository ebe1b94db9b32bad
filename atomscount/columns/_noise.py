"""The noise of an image, measured apart from a model's misfit, for the column fit's position errors.

The residual ``data - model`` holds the noise and the model's misfit (real columns
are not Gaussians). The misfit is smooth on the scale of a column's width, the
noise changes from pixel to pixel: a fourth difference across both axes,
``[1, -2, 1] x [1, -2, 1] / 6``, keeps white noise at its variance and cuts a
misfit of width ``s`` pixels to about ``1 / (6 s^4)`` of its amplitude (under
1 % for ``s >= 2``). Its robust variance, binned by intensity, gives a noise
model ``a + b I`` (read-out and shot noise).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import nnls

#: median of chi-square(1): a robust variance is median(r^2) / this.
CHI2_MEDIAN = 0.454936
#: The high-pass filter along each axis, of unit sum of squares over both axes together.
_HIGHPASS = np.array([1.0, -2.0, 1.0]) / np.sqrt(6.0)
#: Pixels the noise is measured on, at most (a regular subsample of larger images).
_MAX_SAMPLES = 1 << 18
#: Pixels of the column patches weighed at once, at most.
_PATCH_ELEMENTS = 1 << 22
#: Largest patch radius [pixels] over which a column's noise is weighed.
_MAX_HALF = 256


def _binned(intensity, r2, stat, n_bins):
    """Per intensity bin (quantiles) of at least 20 pixels: (median intensity, ``stat`` of ``r2``, pixel count)."""
    li, rr = np.asarray(intensity, dtype=float), np.asarray(r2, dtype=float)
    edges = np.unique(np.percentile(li, np.linspace(0, 100, n_bins + 1)))
    idx = np.clip(np.searchsorted(edges, li, side="right") - 1, 0, max(len(edges) - 2, 0))
    rows = []
    for k in range(max(len(edges) - 1, 1)):
        sel = idx == k
        if sel.sum() >= 20:
            rows.append((float(np.median(li[sel])), stat(rr[sel]), int(sel.sum())))
    return np.array(rows).reshape(-1, 3)


def affine_variance(intensity, r2, *, n_bins: int = 20) -> tuple[float, float]:
    """``(a, b) >= 0`` of a variance ``a + b * intensity`` fitted to squared residuals ``r2``, robustly.

    The pixels are binned by intensity (quantiles), a robust variance (median of
    ``r2`` over :data:`CHI2_MEDIAN`: right for Gaussian noise, blind to a few
    outliers) is taken in each bin of at least 20 pixels, and the line is fitted
    by non-negative least squares with relative errors (every bin counts alike).
    """
    rows = _binned(intensity, r2, lambda v: float(np.median(v)) / CHI2_MEDIAN, n_bins)
    if not len(rows):
        return float(np.median(r2)) / CHI2_MEDIAN, 0.0
    mat = np.column_stack([np.ones(len(rows)), rows[:, 0]])
    scale = np.maximum(rows[:, 1], 1e-30)
    coef, _ = nnls(mat / scale[:, None], np.ones(len(rows)))
    return float(coef[0]), float(coef[1])


def mean_affine_variance(intensity, r2, *, n_bins: int = 20) -> tuple[float, float]:
    """``(a, b) >= 0`` of a variance ``a + b * intensity`` fitted to the mean of ``r2`` per intensity bin.

    The mean, not the median: it is unbiased for any noise, counting noise of a
    few counts per pixel (whose median is 0) too. Each bin's mean is weighted by
    its count over the fitted variance squared (iterated), so that bins of
    nearly no variance (a dark vacuum) do not pin the line.
    """
    rows = _binned(intensity, r2, lambda v: float(np.mean(v)), n_bins)
    if not len(rows):
        return float(np.mean(r2)) if np.size(r2) else 0.0, 0.0
    mat = np.column_stack([np.ones(len(rows)), rows[:, 0]])
    w = rows[:, 2].astype(float)
    coef = np.zeros(2)
    for _ in range(4):
        sw = np.sqrt(w)
        coef, _ = nnls(mat * sw[:, None], rows[:, 1] * sw)
        pred = mat @ coef
        top = float(pred.max())
        if not top > 0:
            break
        w = rows[:, 2] / np.maximum(pred, 1e-3 * top) ** 2
    return float(coef[0]), float(coef[1])


def local_intensity(data, valid) -> np.ndarray:
    """The data smoothed over a pixel (binomial 3 x 3 over the ``valid`` pixels): the intensity the noise scales with.

    The data, not the model: where the model misfits (a constant background above
    the dark vacuum of a simulation), the noise follows the data.
    """
    valid = np.asarray(valid, dtype=bool)
    taps = np.array([0.25, 0.5, 0.25])
    num = _second_differences(np.pad(np.where(valid, data, 0.0), 1, mode="edge"), taps)
    if valid.all():
        return np.maximum(num, 0.0)
    den = _second_differences(np.pad(valid.astype(float), 1, mode="edge"), taps)
    return np.maximum(num / np.maximum(den, 1e-12), 0.0)


def _second_differences(x, taps):
    """``x`` correlated with 3 ``taps`` along both axes, on the interior only (2 pixels smaller)."""
    x = taps[0] * x[:, :-2] + taps[1] * x[:, 1:-1] + taps[2] * x[:, 2:]
    return taps[0] * x[:-2] + taps[1] * x[1:-1] + taps[2] * x[2:]


def highpass_noise(resid, intensity, valid, *, n_parameters: int = 0) -> tuple[float, float]:
    """Noise variance ``a + b * intensity`` per pixel, from the residual's pixel-to-pixel part.

    Parameters
    ----------
    resid, intensity : ndarray (ny, nx)
        ``data - model`` and the local intensity (:func:`local_intensity`) (image units).
    valid : ndarray (ny, nx) of bool
        Pixels that were fitted.
    n_parameters : int
        Parameters of the fit: the residual of ``N`` pixels holds ``N - n_parameters``
        degrees of freedom of the noise, and the variance is scaled up to match.

    Returns
    -------
    (a, b) : (float, float)
        Both 0 for a noise-free image.
    """
    valid = np.asarray(valid, dtype=bool)
    ny, nx = valid.shape
    if min(ny, nx) < 3:
        return 0.0, 0.0
    # on a regular grid of at most _MAX_SAMPLES pixels: enough for a variance to 0.5 %
    step = max(1, int(np.ceil(np.sqrt((ny - 2) * (nx - 2) / _MAX_SAMPLES))))
    rows, cols = np.meshgrid(np.arange(1, ny - 1, step), np.arange(1, nx - 1, step), indexing="ij")
    rows, cols = rows.ravel(), cols.ravel()
    d = np.zeros(rows.size)
    m = np.zeros(rows.size)
    inner = np.ones(rows.size, dtype=bool)
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            h = _HIGHPASS[di + 1] * _HIGHPASS[dj + 1]
            d += h * resid[rows + di, cols + dj]
            # the filtered noise's variance is the h^2-weighted mean of the per-pixel variances around it
            m += h * h * intensity[rows + di, cols + dj]
            inner &= valid[rows + di, cols + dj]
    if inner.sum() < 20:
        return 0.0, 0.0
    a, b = mean_affine_variance(m[inner], d[inner] ** 2)
    n = int(valid.sum())
    dof = n / max(n - n_parameters, 1)
    return a * dof, b * dof


def position_variance_scale(weights, variance, positions, widths, pixel) -> np.ndarray:
    """Per column, the noise variance its position sees, in the units of the fit's weights.

    A weighted fit with weights ``w`` and per-pixel noise variance ``v`` has the
    position covariance ``C J^T W V W J C`` (``C = (J^T W J)^-1``); where ``w v`` is
    even over a column's footprint this is ``s^2 C`` with ``s^2`` the mean of
    ``w^2 v / w`` weighted by the column's position information ``w r^2 G(r)^2``
    (``G`` its Gaussian of width ``rho``, out to 3 ``rho``). Neighbours' overlaps are
    left out.

    Parameters
    ----------
    weights, variance : ndarray (ny, nx)
        The fit's weights (0 where a pixel does not count) and the noise variance.
    positions : ndarray (n, 2)
        Column centres (x, y) [Å].
    widths : ndarray (n,)
        Gaussian widths [Å].
    pixel : float
        Pixel size [Å].
    """
    ny, nx = weights.shape
    num_img = (weights * weights * variance).ravel()
    w_img = weights.ravel()
    s2 = np.full(len(positions), np.nan)
    good = np.flatnonzero(np.isfinite(widths) & (widths > 0) & np.all(np.isfinite(positions), axis=1))
    good = good[np.argsort(widths[good])]  # chunks of like widths share a patch size
    # a "column" wider than _MAX_HALF pixels (a failed one) is weighed over that radius only
    halves = np.minimum(np.ceil(3.0 * widths[good] / pixel), _MAX_HALF).astype(np.int64)
    i = 0
    while i < good.size:
        # as many columns as keep the chunk's patches (its widest column's size) under _PATCH_ELEMENTS
        n_c = min(2048, good.size - i)
        while n_c > 1 and n_c * (2 * halves[i + n_c - 1] + 1) ** 2 > _PATCH_ELEMENTS:
            n_c //= 2
        chunk, half = good[i : i + n_c], int(halves[i + n_c - 1])
        i += n_c
        off = np.arange(-half, half + 1)
        c0 = np.rint(positions[chunk, 0] / pixel).astype(np.int64)
        r0 = np.rint(positions[chunk, 1] / pixel).astype(np.int64)
        cols = c0[:, None, None] + off[None, None, :]
        rows = r0[:, None, None] + off[None, :, None]
        dx = cols * pixel - positions[chunk, 0, None, None]
        dy = rows * pixel - positions[chunk, 1, None, None]
        r2 = (dx * dx + dy * dy) / (widths[chunk, None, None] ** 2)
        inside = (rows >= 0) & (rows < ny) & (cols >= 0) & (cols < nx) & (r2 <= 9.0)
        kernel = np.where(inside, r2 * np.exp(-r2), 0.0)
        flat = np.clip(rows, 0, ny - 1) * nx + np.clip(cols, 0, nx - 1)
        num = np.einsum("nij,nij->n", kernel, num_img[flat])
        den = np.einsum("nij,nij->n", kernel, w_img[flat])
        s2[chunk] = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return np.maximum(s2, 0.0)


def fit_noise(prob, st, model, position_variance, n_parameters: int):
    """Noise-only position variances of a converged fit, and the noise and misfit it found.

    Parameters
    ----------
    prob, st : _solver.Problem, _solver.State
        The fit (in the solver's units: the image times ``unit``).
    model : ndarray (ny, nx)
        Its model image (:func:`~._solver.render_state`).
    position_variance : ndarray (n, 2)
        Diagonal of ``(J^T W J)^-1`` for (x, y), not yet scaled by any noise level [Å² per weight unit].
    n_parameters : int
        Parameters of the fit.

    Returns
    -------
    var : ndarray (n, 2)
        Position variances from the measured noise [Å²].
    info : dict
        ``a, b`` (the noise variance ``a + b * intensity``, :func:`local_intensity`),
        ``noise_ms`` and ``misfit_ms`` (mean squares over the fitted pixels) and
        ``chi2_over_noise`` (the fit's chi-square over what the noise alone gives),
        all in the solver's units.
    """
    valid = (prob.mask if prob.mask is not None else prob.weights) > 0
    resid = prob.data - model
    intensity = local_intensity(prob.data, valid)
    a, b = highpass_noise(resid, intensity, valid, n_parameters=n_parameters)
    variance = a + b * intensity
    s2 = position_variance_scale(prob.weights, variance, np.column_stack([st.x, st.y]), st.rho_per_column(prob),
                                 prob.pixel)  # fmt: skip
    n = int(valid.sum())
    shrink = max(n - n_parameters, 1) / max(n, 1)
    noise_ms = float(np.mean(variance[valid])) * shrink if n else float("nan")
    resid_ms = float(np.mean(resid[valid] ** 2)) if n else float("nan")
    w = prob.weights[valid]
    chi2 = float(np.sum(w * resid[valid] ** 2))
    noise_chi2 = float(np.sum(w * variance[valid])) * shrink
    info = {"a": a, "b": b, "noise_ms": noise_ms, "misfit_ms": max(resid_ms - noise_ms, 0.0),
            "chi2_over_noise": chi2 / noise_chi2 if noise_chi2 > 0 else float("inf")}  # fmt: skip
    return position_variance * s2[:, None], info
