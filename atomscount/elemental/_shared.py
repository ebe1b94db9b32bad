"""Pieces shared by the count (:mod:`.reconstruct`) and processed-map (:mod:`.maps`) reconstructions:
the series check, the HAADF model's least-squares fit, the regularisation weight's secant search, the
particle mask, the concentrations with their 1-σ, and the regulariser's curvature."""

from __future__ import annotations

import warnings

import numpy as np

from . import _objective as obj
from .result import FLAG_PARTIAL_VOLUME

_GAMMA_RANGE = (0.4, 1.6)


def _element_names(edxs, elements, what: str) -> tuple:
    """``elements`` (default: ``edxs``' keys, in order) as a tuple of distinct keys of the dict ``edxs``;
    ``what`` names what its series hold, for the message."""
    if not isinstance(edxs, dict) or not edxs:
        raise TypeError(f"edxs must be a non-empty dict of element -> TiltSeries of {what}, got {type(edxs).__name__}")
    if elements is None:
        return tuple(str(e) for e in edxs)
    if isinstance(elements, str):
        raise TypeError(f"elements must be a sequence of chemical symbols, got the string {elements!r}")
    elements = tuple(str(e) for e in elements)
    if not elements or len(set(elements)) != len(elements) or any(e not in edxs for e in elements):
        raise ValueError(f"elements must be distinct keys of edxs ({list(edxs)}), got {list(elements)}")
    return elements


def _series(s, name):
    from ..tomo.geometry import TiltSeries

    if not isinstance(s, TiltSeries):
        raise TypeError(f"{name} must be a TiltSeries, got {type(s).__name__}")
    if not s.single_axis:
        raise ValueError(f"{name} must be a single-axis tilt series (every angle (0, θ, 0))")
    return s


def _fit_haadf(p, h, gamma, fit_gamma, fixed_w=None, prior=None):
    """Least squares of ``h ≈ Σ w_e p_e^γ + c`` (w ≥ 0) on up to 200,000 pixels; γ by a bounded search.

    The weights are pulled weakly towards ``s · prior`` (the Z^1.7 ratios, with the scale s fitted): a ridge
    of a thousandth of the features' mean square, which leaves well-determined weights (Au against Ag)
    to the data and keeps nearly equal elements (Pt against Au), which the HAADF cannot tell apart, at
    their prior ratio instead of trading weight between them.
    """
    from scipy.optimize import lsq_linear, minimize_scalar

    rng = np.random.default_rng(0)
    n_el = p.shape[0]
    flat = p.reshape(n_el, -1)
    take = rng.choice(flat.shape[1], min(flat.shape[1], 200_000), replace=False)
    pp, hh = np.maximum(flat[:, take], 0.0), h.ravel()[take]

    def solve(g):
        feats = pp**g
        if fixed_w is not None:
            c = float(np.mean(hh - fixed_w @ feats))
            return fixed_w, c, float(np.sum((fixed_w @ feats + c - hh) ** 2))
        a = np.vstack([feats, np.ones_like(hh), np.zeros_like(hh)]).T  # unknowns: w, c, s
        rhs = hh
        if prior is not None:
            tau = np.sqrt(1e-3 * float(np.mean(np.sum(feats * feats, axis=1))))
            ridge = np.zeros((n_el, n_el + 2))
            ridge[:, :n_el] = tau * np.eye(n_el)
            ridge[:, -1] = -tau * prior
            a, rhs = np.vstack([a, ridge]), np.r_[hh, np.zeros(n_el)]
        lb = np.r_[np.zeros(n_el), -np.inf, 0.0]
        sol = lsq_linear(a, rhs, bounds=(lb, np.full(n_el + 2, np.inf)))
        res = a[: len(hh)] @ sol.x - hh
        return sol.x[:n_el], float(sol.x[n_el]), float(np.sum(res * res))

    if fit_gamma:
        gamma = float(minimize_scalar(lambda g: solve(g)[2], bounds=_GAMMA_RANGE, method="bounded",
                                      options={"xatol": 1e-3}).x)  # fmt: skip
    w, c, _ = solve(gamma)
    return w, c, gamma


def _next_log_mu(pts):
    """The next log μ: a secant step towards log(deviance / target) = 0, a factor of 4 at most (and a factor
    of 4 before two points). μ stays where the deviance is within 3 % of its target; where the deviance
    hardly moves with μ (under 2 % per e-fold) and lies below its target, the data cannot choose and the
    smaller weight (the less biased solution) is kept."""
    x1, y1 = pts[-1]
    if abs(y1) < 0.03:
        return x1
    step = -np.sign(y1) * np.log(4.0)
    if len(pts) >= 2:
        x0, y0 = pts[-2]
        if x1 == x0:  # the deviance drifted as the solution converged: a smaller step
            return x1 - np.sign(y1) * np.log(2.0)
        slope = (y1 - y0) / (x1 - x0)
        if slope > 0.02:
            step = float(np.clip(-y1 / slope, -np.log(4.0), np.log(4.0)))
        elif y1 < 0:
            return min(x0, x1)
    return x1 + step


def _mask_and_flags(total):
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    if not np.any(total > 0) or np.ptp(total) <= 0:
        raise ValueError("the reconstruction holds no particle (every voxel's total density is the same)")
    mask = total > threshold_otsu(total)
    surface = mask & ~ndimage.binary_erosion(mask)
    flags = np.zeros(total.shape, np.uint8)
    flags[surface | (mask & (total < 0.5 * np.median(total[mask])))] |= FLAG_PARTIAL_VOLUME
    return mask, flags


def _concentration_sigma(u, var_u, mask):
    """Concentrations ``u_e / Σu`` in the mask and their 1-σ by first-order propagation of independent voxel
    variances ``var_u``."""
    total = u.sum(axis=0)
    safe = np.where(total > 0, total, 1.0)
    conc = np.where(mask, u / safe, 0.0)
    var = np.zeros_like(u)
    for e in range(u.shape[0]):
        for j in range(u.shape[0]):
            d = ((total - u[e]) if j == e else -u[e]) / safe**2
            var[e] += d * d * var_u[j]
    return conc, np.where(mask, np.sqrt(var), 0.0)


def _regulariser_curvature(problem, u):
    """Diagonal of the smoothed regulariser's Hessian, bounded by ``μ · 2 Σ_axes 1 / |∇u|_ε`` per voxel."""
    g = obj.grad3(u)
    r = np.sqrt(np.sum(g * g, axis=-4) + problem.eps**2)
    return problem.mu * 2.0 * 3.0 / r


def _convergence(history, stopped: bool, tol: float, n_iter: int, name: str):
    """(the objective's history as an array, converged): converged when the solver stopped on its own or the
    relative change per iteration over the last five is under ``tol``; otherwise a RuntimeWarning from
    ``name``, at its caller, with the objective and the last changes."""
    hist = np.array(history)
    rel = np.abs(np.diff(hist[-6:])) / np.maximum(np.abs(hist[-5:]), 1e-300) if len(hist) > 5 else np.array([np.inf])
    converged = stopped or bool(len(hist) >= 2 and np.max(rel) < tol)
    if not converged:
        warnings.warn(f"{name} did not converge in {n_iter} iterations: objective {hist[-1]:.6g}, "
                      f"last relative changes up to {np.max(rel):.2g} (tol {tol:g}); raise n_iter",
                      RuntimeWarning, stacklevel=3)  # fmt: skip
    return hist, converged
