"""Elemental reconstruction from processed maps: a least-squares likelihood where the maps are not counts.

Published EDXS/EELS maps are often processed before they are shared: background-subtracted,
quantified into atomic fractions, normalised to their maximum or denoised. Such maps are not
X-ray counts, so the Poisson deviance of :func:`~atomscount.elemental.reconstruct_elemental`
and its discrepancy rule (a deviance of about one per pixel) do not apply to them. This
module fits them with a Gaussian likelihood instead::

    Σ_e |b_e - s A u_e|² / (2 σ_e²)  +  |h - Σ_e w_e (A u_e)^γ - c|² / (2 σ_h²)  +  μ R(u),   u ≥ 0

- ``b_e`` the map series of element e, ``A`` the projector of :mod:`atomscount.tomo.operators`
  and ``s`` one common scale (set from a SIRT start). The maps carry no cross-sections, dose
  or solid angle: they are taken to be on **one common scale** (atomic fractions, or maps
  quantified alike), so that the concentrations ``u_e / Σ u`` are their ratios.
- ``σ_e`` the noise of each element's maps, estimated from the maps themselves by
  :func:`estimate_map_noise` (the high-pass residual of a 3×3 Laplacian-type filter, robust).
- the HAADF term, its fitted weights ``w_e``, γ and offset, and the regularisers ("tv",
  "tnv", "tgv") are those of :func:`~atomscount.elemental.reconstruct_elemental`.
- ``μ`` chosen by the **discrepancy principle** on the estimated noise: the weighted residual
  ``Σ r² / σ_e²`` at the solution equals the number of map pixels that hold signal in their
  3×3 neighbourhood (the exact zeros of a thresholded background carry no noise; a secant
  search in log μ over rounds, as for counts).

A series with one projection is a 2D map: it is reconstructed on a slab one voxel thick
(the projection at 0° of that slab is the map), so 2D fusion costs what the map costs.

:func:`~atomscount.elemental.reconstruct_elemental` comes here by itself when none of the
EDXS series holds whole non-negative counts, and says so with a :class:`NonCountDataWarning`;
the result's ``regularisation["likelihood"]`` and ``provenance["likelihood"]`` are
``"gaussian"``, and ``provenance["map_noise_sigma"]`` holds the estimated noise per element.
"""

from __future__ import annotations

import time
import warnings

import numpy as np

from .._checks import check_bool, check_choice, check_integer, check_real
from ..tomo.operators import backproject_volume, project_volume
from . import _objective as obj
from . import _solver
from ._shared import (
    _concentration_sigma,
    _convergence,
    _element_names,
    _fit_haadf,
    _mask_and_flags,
    _next_log_mu,
    _regulariser_curvature,
    _series,
)
from .result import ElementalVolumes

__all__ = ["NonCountDataWarning", "estimate_map_noise", "is_counts", "map_noise_model", "reconstruct_maps"]

_MAX_ROUNDS = 4
_LIKELIHOOD_RULE = "discrepancy principle on the maps' least-squares residual (Gaussian, noise estimated from the maps)"


class NonCountDataWarning(UserWarning):
    """EDXS series that are processed maps, not X-ray counts, were reconstructed with the least-squares path."""


def is_counts(series) -> bool:
    """Whether a series (or array) holds X-ray counts: finite, non-negative whole numbers.

    A :class:`~atomscount.tomo.TiltSeries` whose provenance says ``noise=False`` holds a
    simulation's expected counts and counts as counts.

    Parameters
    ----------
    series : TiltSeries or array_like
        The images [counts per pixel, or anything else].

    Returns
    -------
    bool
    """
    prov = getattr(series, "provenance", None)
    if isinstance(prov, dict) and prov.get("noise") is False:
        return True
    b = np.asarray(getattr(series, "images", series), dtype=np.float64)
    return bool(np.all(np.isfinite(b)) and (b >= 0).all() and np.allclose(b, np.round(b), rtol=0, atol=1e-6))


def estimate_map_noise(images) -> float:
    """The standard deviation of white noise in maps, from their high-pass residual.

    Each map is filtered with the 3×3 kernel ``[[1, -2, 1], [-2, 4, -2], [1, -2, 1]]``
    (it removes constants, ramps and quadratic shading; on white noise of deviation σ its
    output has deviation 6σ), and σ is the median of the output's magnitude over 0.6745 × 6,
    taken only where the 3×3 neighbourhood holds signal (so that an empty background of
    zeros does not pull it to zero). Edges and fine structure raise the estimate a little;
    maps that were smoothed before they were shared lower it. Floored at 10⁻³ of the maps'
    range.

    Parameters
    ----------
    images : array_like (rows, cols) or (k, rows, cols)
        The maps (any unit; σ comes back in it).

    Returns
    -------
    float
        σ, in the maps' unit.

    Raises
    ------
    ValueError
        For maps that are not 2D or 3D, smaller than 3×3, not finite, or all zero.
    """
    from scipy import ndimage

    a = np.asarray(images, dtype=np.float64)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or min(a.shape[1:]) < 3:
        raise ValueError(f"images must be (rows, cols) or (k, rows, cols) of at least 3x3, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError("images must be finite, got NaN or infinite values")
    if not a.any():
        raise ValueError("images are all zero: no signal to estimate the noise of")
    hp = (a[:, :-2, :-2] - 2 * a[:, :-2, 1:-1] + a[:, :-2, 2:] - 2 * a[:, 1:-1, :-2] + 4 * a[:, 1:-1, 1:-1]
          - 2 * a[:, 1:-1, 2:] + a[:, 2:, :-2] - 2 * a[:, 2:, 1:-1] + a[:, 2:, 2:])  # fmt: skip
    support = ndimage.maximum_filter(a != 0, size=(1, 3, 3))[:, 1:-1, 1:-1]
    sd = float(np.median(np.abs(hp[support]))) / (0.6745 * 6.0)
    vals = a[a != 0]
    floor = 1e-3 * float(np.percentile(vals, 99.9) - min(np.percentile(vals, 0.1), 0.0))
    return max(sd, floor, 1e-300)


def map_noise_model(images) -> tuple[float, float]:
    """The maps' noise variance as a function of their local mean: ``var = a + c · m``.

    Processed maps are often scaled counts, whose variance grows with the signal (``c``), on
    top of a constant part (``a``: read-out, background subtraction). The high-pass residual
    of :func:`estimate_map_noise` (its square over 36, per pixel) is binned by the 3×3 local
    mean ``m`` (20 quantile bins of the pixels with signal near them); each bin's median
    (over 0.455, the median of χ²₁) is its variance, and ``a, c ≥ 0`` are fitted to those by
    least squares. Edges and fine structure raise it a little.

    Parameters
    ----------
    images : array_like (rows, cols) or (k, rows, cols)
        The maps (any unit).

    Returns
    -------
    (a, c) : tuple of float
        ``a`` in the maps' unit squared, ``c`` in the maps' unit.

    Raises
    ------
    ValueError
        As :func:`estimate_map_noise`.
    """
    from scipy import ndimage
    from scipy.optimize import nnls

    sd = estimate_map_noise(images)  # checks the input
    a = np.asarray(images, dtype=np.float64)
    a = a[None] if a.ndim == 2 else a
    hp = (a[:, :-2, :-2] - 2 * a[:, :-2, 1:-1] + a[:, :-2, 2:] - 2 * a[:, 1:-1, :-2] + 4 * a[:, 1:-1, 1:-1]
          - 2 * a[:, 1:-1, 2:] + a[:, 2:, :-2] - 2 * a[:, 2:, 1:-1] + a[:, 2:, 2:])  # fmt: skip
    m = ndimage.uniform_filter(a, size=(1, 3, 3))[:, 1:-1, 1:-1]
    support = ndimage.maximum_filter(a != 0, size=(1, 3, 3))[:, 1:-1, 1:-1]
    hp2, m = hp[support] ** 2 / 36.0, m[support]
    edges = np.unique(np.quantile(m, np.linspace(0, 1, 21)))
    if len(edges) < 3:
        return sd**2, 0.0
    idx = np.clip(np.searchsorted(edges, m, side="right") - 1, 0, len(edges) - 2)
    rows = [(m[idx == i].mean(), np.median(hp2[idx == i]) / 0.455) for i in range(len(edges) - 1) if (idx == i).any()]
    mm, vv = np.array(rows).T
    (fa, fc), _ = nnls(np.vstack([np.ones_like(mm), np.maximum(mm, 0.0)]).T, vv)
    if fa <= 0 and fc <= 0:
        return sd**2, 0.0
    return float(fa), float(fc)


def _variance(images, a, c):
    """Per-pixel variance ``a + c · m`` (m the 3×3 local mean), floored at a tenth of its median where there is
    signal (the exact zeros of a thresholded background would otherwise weigh without bound)."""
    from scipy import ndimage

    m = np.maximum(ndimage.uniform_filter(images, size=(1, 3, 3)), 0.0)
    var = a + c * m
    support = ndimage.maximum_filter(images != 0, size=(1, 3, 3))
    floor = 0.1 * float(np.median(var[support])) if support.any() else 0.0
    return np.maximum(var, max(floor, 1e-300))


def _map_inputs(haadf, maps, elements):
    elements = _element_names(maps, elements, "maps")
    series = {e: _series(maps[e], f"edxs[{e!r}]") for e in elements}
    first = series[elements[0]]
    others = [(f"edxs[{e!r}]", s) for e, s in series.items()] + ([("haadf", _series(haadf, "haadf"))] if haadf else [])
    for name, s in others:
        if s.images.shape != first.images.shape:
            raise ValueError(f"{name} has images of shape {s.images.shape}, edxs[{elements[0]!r}] {first.images.shape}")
        if not np.allclose(s.angles, first.angles, atol=1e-6):
            raise ValueError(f"{name} has other tilt angles than edxs[{elements[0]!r}]")
        if not np.isclose(s.pixel_size_angstrom, first.pixel_size_angstrom, rtol=1e-9):
            raise ValueError(f"{name} has pixel size {s.pixel_size_angstrom:g} Å, edxs[{elements[0]!r}] "
                             f"{first.pixel_size_angstrom:g} Å")  # fmt: skip
        if not np.all(np.isfinite(s.images)):
            raise ValueError(f"{name} holds NaN or infinite values")
    for e, s in series.items():
        if not s.images.any():
            raise ValueError(f"edxs[{e!r}] is all zeros: no signal of that element to reconstruct")
    return elements, np.stack([series[e].images.astype(np.float64) for e in elements]), first


class _LeastSquares:
    """The objective of the module docstring and its gradient, for a flat vector of unknowns."""

    def __init__(self, maps, sigma2, scale, haadf, angles, voxel, shape, regulariser, mu, eps):
        self.b, self.sigma2, self.s, self.h = maps, sigma2, scale, haadf
        self.angles, self.voxel, self.shape = angles, voxel, shape
        self.reg, self.mu, self.eps = regulariser, mu, eps
        self.n_el = maps.shape[0]
        self.n_u = self.n_el * int(np.prod(shape))
        self.w = self.c = self.sigma_h = self.n_signal = None
        self.gamma = 1.0

    def split(self, z):
        u = z[: self.n_u].reshape((self.n_el, *self.shape))
        w = z[self.n_u :].reshape((self.n_el, 3, *self.shape)) if self.reg == "tgv" else None
        return u, w

    def __call__(self, z, with_regulariser=True):
        u, w = self.split(z)
        proj = project_volume(u, self.angles, self.voxel)
        r = self.s * proj - self.b
        f = 0.5 * float(np.sum(r * r / self.sigma2))
        gproj = self.s * r / self.sigma2
        if self.h is not None:
            pp = np.maximum(proj, 1e-6 * max(proj.max(), 1e-12))
            pg = pp**self.gamma if self.gamma != 1.0 else pp
            rh = np.tensordot(self.w, pg, axes=1) + self.c - self.h
            f += float(np.sum(rh * rh)) / (2 * self.sigma_h**2)
            dp = self.gamma * pg / pp if self.gamma != 1.0 else 1.0
            gproj = gproj + self.w[:, None, None, None] * dp * (rh / self.sigma_h**2)[None]
        grad_u = backproject_volume(gproj, self.angles, self.voxel, self.shape)
        if not with_regulariser:
            return f, grad_u.ravel()
        rv, ru, rw = obj.regulariser(self.reg, u, w, self.eps)
        f += self.mu * rv
        grad_u += self.mu * ru
        g = grad_u.ravel() if rw is None else np.concatenate([grad_u.ravel(), self.mu * rw.ravel()])
        return f, g

    def residuals(self, z):
        """Per element: the weighted residual ``Σ r² / σ_e²`` and the number of map pixels that hold signal in
        their 3×3 neighbourhood (the exact zeros of a thresholded background carry no noise to fit to)."""
        from scipy import ndimage

        if self.n_signal is None:
            self.n_signal = ndimage.maximum_filter(self.b != 0, size=(1, 1, 3, 3)).sum(axis=(1, 2, 3)).astype(float)
        u, _ = self.split(z)
        r = self.s * project_volume(u, self.angles, self.voxel) - self.b
        return np.sum(r * r / self.sigma2, axis=(1, 2, 3)), self.n_signal

    def curvature(self, u):
        """Diagonal of the data terms' Gauss-Newton Hessian per voxel (each ray's ``a_ij² ≈ f voxel a_ij``, with
        f = 1 for a one-voxel slab seen at 0° and 2/3 for bilinear splatting)."""
        thin = self.shape[0] == 1
        wgt = self.s**2 / self.sigma2
        if self.h is not None:
            proj = project_volume(u, self.angles, self.voxel)
            pp = np.maximum(proj, 1e-6 * max(proj.max(), 1e-12))
            wgt += (self.w[:, None, None, None] * self.gamma * pp ** (self.gamma - 1.0)) ** 2 / self.sigma_h**2
        f = 1.0 if thin else 2.0 / 3.0
        return f * self.voxel * backproject_volume(wgt, self.angles, self.voxel, self.shape)


def _sirt(b, angles, voxel, shape, n_iter=20):
    """Positive SIRT of each map series (the start): ``x ← max(x + C Aᵀ R (b - A x), 0)``."""
    ones = np.ones(shape)
    row = project_volume(ones, angles, voxel)
    col = backproject_volume(np.ones_like(row), angles, voxel, shape)
    r_inv, c_inv = 1.0 / np.maximum(row, 1e-12 * row.max()), 1.0 / np.maximum(col, 1e-12 * col.max())
    x = np.zeros((b.shape[0], *shape))
    for _ in range(n_iter):
        x += c_inv * backproject_volume(r_inv * (b - project_volume(x, angles, voxel)), angles, voxel, shape)
        np.maximum(x, 0.0, out=x)
    return x


def _mask_2d(total):
    """A 2D map's sample: every pixel with a total above 2 % of its 99th percentile (a film fills the field)."""
    top = float(np.percentile(total, 99))
    if not top > 0:
        raise ValueError("the reconstruction holds no signal (every pixel's total is zero)")
    return total > 0.02 * top, np.zeros(total.shape, np.uint8)


def reconstruct_maps(haadf, edxs, elements=None, *, regulariser: str = "tnv", weights="auto", gamma="fit",
                     haadf_weights="fit", sum_to_one: bool = False, n_iter: int = 200, tol: float = 1e-4,
                     progress: bool = True) -> ElementalVolumes:  # fmt: skip
    """Elemental volumes (or 2D maps) from processed, non-count elemental maps, by least squares.

    The Gaussian counterpart of :func:`~atomscount.elemental.reconstruct_elemental` (module
    docstring), which calls it by itself on maps that are not whole counts.

    Parameters
    ----------
    haadf : TiltSeries or None
        The HAADF series (any linear unit) at the maps' angles and pixel size, or None.
    edxs : dict of str to TiltSeries
        Each element's processed maps (any unit, the **same** for every element: atomic
        fractions, or maps quantified alike; negative values allowed). One projection at
        0° is a 2D map, reconstructed on a one-voxel slab.
    elements : sequence of str, optional
        Which of ``edxs``' elements, in this order (default: all).
    regulariser : {"tnv", "tv", "tgv"}
        As in :func:`~atomscount.elemental.reconstruct_elemental`.
    weights : "auto" or float
        μ: "auto" by the discrepancy principle on the estimated noise; a number fixes it.
    gamma : "fit" or float
        The HAADF power, fitted in [0.4, 1.6] or fixed.
    haadf_weights : "fit"
        Fitted (the maps carry no absolute scale, so given per-atom weights cannot apply).
    sum_to_one : bool
        Not available for maps (False only).
    n_iter : int
        Quasi-Newton iterations in all, over the rounds of the weight search.
    tol : float
        Converged when the objective's relative change per iteration falls below ``tol``.
    progress : bool
        A progress bar over iterations.

    Returns
    -------
    ElementalVolumes
        Concentrations (ratios of the maps' common unit) with a Laplace-approximation 1-σ;
        ``density`` the total on a **relative** scale (its 99.5th percentile in the sample 1;
        ``provenance["density_absolute"]`` False); ``regularisation`` and ``provenance``
        name the likelihood ("gaussian") and hold the estimated noise per element.

    Raises
    ------
    TypeError
        For edxs that is not a dict of TiltSeries, or a haadf that is not a TiltSeries.
    ValueError
        For series with different angles, shapes or pixel sizes, non-finite or all-zero
        maps, given ``haadf_weights``, ``sum_to_one=True``, or a result with no signal.

    Warns
    -----
    RuntimeWarning
        When the objective had not converged after ``n_iter`` iterations.
    """
    from tqdm.auto import tqdm

    from .forward import default_haadf_weights

    check_choice(regulariser, "regulariser", obj.REGULARISERS)
    n_iter = check_integer(n_iter, "n_iter", low=1)
    tol = check_real(tol, "tol", low=0.0, open_low=True)
    progress = check_bool(progress, "progress")
    if check_bool(sum_to_one, "sum_to_one"):
        raise ValueError("sum_to_one must be False for processed maps (they carry no total density to hold), got True")
    if not (isinstance(haadf_weights, str) and haadf_weights == "fit"):
        raise ValueError(f"haadf_weights must be 'fit' for processed maps (no absolute scale), got {haadf_weights!r}")
    auto = isinstance(weights, str)
    if auto and weights != "auto":
        raise ValueError(f"weights must be 'auto' or a number >= 0, got {weights!r}")
    mu = None if auto else check_real(weights, "weights", low=0.0)
    fit_gamma = isinstance(gamma, str)
    if fit_gamma and gamma != "fit":
        raise ValueError(f"gamma must be 'fit' or a number in (0, 2], got {gamma!r}")
    gamma0 = 1.0 if fit_gamma else check_real(gamma, "gamma", low=0.0, high=2.0, open_low=True)
    elements, b, first = _map_inputs(haadf, edxs, elements)
    t0 = time.perf_counter()
    voxel, angles = first.pixel_size_angstrom, first.angles[:, 1]
    ny, nu = first.shape
    thin = first.n_projections == 1 and abs(angles[0]) < 1e-9
    shape = (1, ny, nu) if thin else (nu, ny, nu)
    sigma = np.array([estimate_map_noise(b[i]) for i in range(len(elements))])
    noise = [map_noise_model(b[i]) for i in range(len(elements))]
    var = np.stack([_variance(b[i], *noise[i]) for i in range(len(elements))])
    u0 = _sirt(b, angles, voxel, shape, n_iter=1 if thin else 20)
    scale = float(np.percentile(u0.sum(axis=0), 99.5)) or float(u0.max()) or 1.0
    u0 /= scale
    prob = _LeastSquares(b, var, scale, None if haadf is None else haadf.images.astype(np.float64), angles,
                         voxel, shape, regulariser, 0.0, 0.05)  # fmt: skip
    prior = None
    if haadf is not None:
        prob.sigma_h = sigma_h0 = estimate_map_noise(prob.h)
        try:
            prior = np.array([default_haadf_weights(elements)[e] for e in elements])
        except (ValueError, KeyError, TypeError):  # not chemical symbols: no Z-contrast prior
            prior = None
        prob.w, prob.c, prob.gamma = _fit_haadf(project_volume(u0, angles, voxel), prob.h, gamma0, False, prior=prior)
    z = u0.ravel() if regulariser != "tgv" else np.concatenate([u0.ravel(), np.zeros(3 * u0.size)])
    if mu is None:
        _, g_data = prob(z, with_regulariser=False)
        _, ru, _ = obj.regulariser(regulariser, u0, prob.split(z)[1], prob.eps)
        gd, gr = np.abs(g_data).mean(), np.abs(ru).mean()
        mu = float(0.1 * gd / gr) if gr > 0 and gd > 0 else 1.0
        chi2, n_sig = prob.residuals(z)
        if chi2.sum() < n_sig.sum():  # the start already fits the maps (a 2D map): the noise's scale in u instead
            ray = float(np.median(project_volume(np.ones(shape), angles, voxel)))
            mu = float(scale * ray / np.sqrt(np.median(var[var > var.min()] if np.ptp(var) > 0 else var)))
    prob.mu = mu
    n_rounds = min(_MAX_ROUNDS, n_iter) if (auto or haadf is not None) else 1
    per = [n_iter // n_rounds + (1 if r < n_iter % n_rounds else 0) for r in range(n_rounds)]
    history, rounds, state, log_pts = [], [], {}, []
    bar = tqdm(total=n_iter, desc="elemental maps", unit="iter", disable=not progress)

    def callback(f):
        history.append(float(f))
        bar.update()

    stopped = False
    for r, its in enumerate(per):
        u, _ = prob.split(z)
        p_u = (1.0 / np.maximum(prob.curvature(u) + _regulariser_curvature(prob, u), 1e-30)).ravel()
        p = p_u if z.size == p_u.size else np.concatenate([p_u, np.full(z.size - p_u.size, prob.eps / max(
            prob.mu * (1.0 + 4.0 * obj.TGV_RATIO), 1e-30))])  # fmt: skip
        z, _, stopped = _solver.minimise(prob, z, prob.n_u, max_iter=its, ftol=tol, callback=callback, precond=p,
                                         state=state, memory=5 if regulariser == "tgv" else 10)  # fmt: skip
        chi2, n_pix = prob.residuals(z)
        dev, target = float(chi2.sum()), float(n_pix.sum())
        rounds.append({"mu": prob.mu, "deviance": dev, "target_deviance": target, "gamma": prob.gamma,
                       "weights": None if prob.w is None else prob.w.tolist()})  # fmt: skip
        if r == len(per) - 1:
            break
        if auto:
            log_pts.append((np.log(prob.mu), np.log(max(dev, 1e-9 * target) / target)))
            prob.mu = float(np.exp(_next_log_mu(log_pts)))
        if haadf is not None:
            u, _ = prob.split(z)
            proj = project_volume(u, angles, voxel)
            prob.w, prob.c, prob.gamma = _fit_haadf(proj, prob.h, prob.gamma, fit_gamma, prior=prior)
            # the HAADF weighs no more than its model explains it: σ_h at least the fit's RMS residual (an
            # atomic-resolution image that the maps' model reproduces only in part would otherwise drown the maps)
            fit = np.tensordot(prob.w, np.maximum(proj, 0.0) ** prob.gamma, axes=1) + prob.c
            prob.sigma_h = max(sigma_h0, float(np.sqrt(np.mean((fit - prob.h) ** 2))))
    bar.close()
    u, _ = prob.split(z)
    hist, converged = _convergence(history, stopped, tol, n_iter, "reconstruct_maps")
    var_u = 1.0 / np.maximum(prob.curvature(u) + _regulariser_curvature(prob, u), 1e-30)
    total = u.sum(axis=0)
    mask, flags = _mask_2d(total) if thin else _mask_and_flags(total)
    conc, sig = _concentration_sigma(u, var_u, mask)
    chi2, n_pix = prob.residuals(z)
    reg = {"name": regulariser, "mu": prob.mu, "auto": auto, "smoothing_eps": prob.eps, "likelihood": "gaussian",
           "rule": _LIKELIHOOD_RULE if auto else "given", "final_deviance": rounds[-1]["deviance"],
           "target_deviance": rounds[-1]["target_deviance"], "rounds": rounds}  # fmt: skip
    if regulariser == "tgv":
        reg["alpha0_over_alpha1"] = obj.TGV_RATIO
    prov = {"source": "atomscount.elemental.reconstruct_maps", "likelihood": "gaussian", "n_iter": n_iter,
            "tol": tol, "seconds": time.perf_counter() - t0, "haadf": haadf is not None,
            "haadf_offset": None if prob.c is None else float(prob.c), "haadf_noise_sigma": prob.sigma_h,
            "map_noise_sigma": dict(zip(elements, sigma.tolist(), strict=True)),
            "map_noise_model": {e: {"variance_floor": a, "variance_per_unit": c} for e, (a, c) in zip(elements, noise,
                                strict=True)},  # fmt: skip
            "chi2_per_pixel": dict(zip(elements, (chi2 / n_pix).tolist(), strict=True)),
            "map_scale": scale, "two_dimensional": thin, "density_absolute": False,
            "density_unit": "relative (99.5th percentile of the total 1): processed maps carry no dose"}  # fmt: skip
    w = None if prob.w is None else dict(zip(elements, prob.w.tolist(), strict=True))
    return ElementalVolumes(elements, conc, sig, total, mask, flags, voxel, f"maps-{regulariser}", haadf_weights=w,
                            gamma=prob.gamma if haadf is not None else None, regularisation=reg, objective=hist,
                            converged=converged, provenance=prov)  # fmt: skip


def _processed(edxs) -> bool:
    """Whether ``edxs`` is a dict of tilt series none of which holds counts (processed maps)."""
    from ..tomo.geometry import TiltSeries

    if not isinstance(edxs, dict) or not edxs or not all(isinstance(s, TiltSeries) for s in edxs.values()):
        return False
    return not any(is_counts(s) for s in edxs.values())


def _warn_routed(edxs) -> None:
    """Warn (:class:`NonCountDataWarning`) that ``edxs`` are processed maps going the least-squares way, naming
    the first value that is not a whole non-negative count."""
    e, s = next(iter(edxs.items()))
    b = np.asarray(s.images, dtype=np.float64)
    bad = b.flat[int(np.argmax(np.abs(b - np.round(b)) + (b < 0)))]
    warnings.warn(f"edxs holds processed maps, not X-ray counts (edxs[{e!r}] has {bad:.6g}): reconstructed by "
                  "reconstruct_maps with a Gaussian (least-squares) likelihood, the weight by the discrepancy "
                  "principle on the noise estimated from the maps' high-pass residual; the concentrations assume "
                  "the maps share one scale (result.regularisation['likelihood'] == 'gaussian')",
                  NonCountDataWarning, stacklevel=3)  # fmt: skip
