"""The weight μ of :func:`~atomscount.elemental.reconstruct_elemental` by Poisson-thinning cross-validation.

The counts split binomially into two halves (``b₁`` fitted, ``b₂ = b - b₁`` held out: independent Poisson
series of half the dose); a ladder of μ is fitted to ``b₁`` and each fit scored by its deviance on ``b₂``.
Given the fits, the held-out pixels are independent, so the standard error of the difference between two
fits' held-out deviances follows from the per-pixel terms (paired); it is reported beside each point.

The choice is the minimum (a parabola's vertex), not the one-standard-error rule (Hastie, Tibshirani &
Friedman, *The Elements of Statistical Learning*, 2nd ed., §7.10, doi:10.1007/978-0-387-84858-7: the
largest μ within one standard error of the minimum). Measured on the benchmark's particles (docs/elemental.rst)
the rule did not pay: on the 64³ Au@Ag rod at 30 counts it moves μ from 1.7 to 5.1 (0.8 SE apart) and
Au/Ag from 0.054/0.042 to 0.067/0.048; the 128³ rod's flat-looking held-out deviance (117,744 at μ 0.36
against 117,781 at 1.09) was 7 SE apart, a fit stopped after 12 iterations (:data:`_CV_MIN_ITER`), not a tie.
Taking the vertex only where it lies above the minimum (towards more smoothing) cost the three-element
particle's Au 0.127 → 0.145 at 30 counts.
"""

from __future__ import annotations

import numpy as np

from ..tomo.operators import project_volume
from . import _objective as obj

#: The ladder of weights: factors of this between fits, at most this many fits.
_CV_STEP = 3.0
_CV_MAX_STEPS = 7
#: Each fit of the ladder may take this share of its budget (1/3): a fit stopped far from convergence scores
#: worse than the next, which continues from it, and drags μ down (128³ rod: at 1/7, 0.35 and NRMSE 0.15).
_CV_FIT_SHARE = 3
#: The ladder's fits stop at this many times ``tol``: the held-out deviance needs the fit's shape, not its last digits.
_CV_TOL_FACTOR = 3.0
#: Each fit of the ladder takes at least this many iterations: continuing from the fit at another μ, the first
#: steps lower the objective little, and the stopping rule ended the 128³ rod's fit at μ 0.36 after 12, scored
#: nearly as the fit at 1.09 it started from, and so a false minimum (μ 0.88, Au/Ag 0.070/0.053; at 30, 1.2 and
#: 0.058/0.045).
_CV_MIN_ITER = 30
#: μ of the full series over the cross-validated μ of its half: √2, as a threshold ∝ the noise's σ (TV's
#: optimal weight in the objective's units, counts' deviance, grows as the square root of the dose).
_CV_DOSE_FACTOR = float(np.sqrt(2.0))


def ladder_choice(log_mu, terms):
    """μ from a ladder of held-out deviances, and the standard error of each point's difference from the minimum.

    Parameters
    ----------
    log_mu : array_like, shape (n,)
        The ladder's log μ, in any order.
    terms : sequence of n arrays of one shape
        Each fit's held-out deviance per pixel (summed, the held-out deviance).

    Returns
    -------
    chosen : float
        log μ at the minimum held-out deviance: the vertex of the parabola through the lowest point and its
        neighbours where it has both (and the parabola opens upwards), else the lowest point.
    i_min : int
        Index of the lowest held-out deviance.
    se : ndarray, shape (n,)
        Standard error of each point's held-out deviance minus the lowest one's, ``sqrt(N var(dᵢ))`` over the
        N pixels' paired differences ``dᵢ`` (0 at the minimum): given the fits, the held-out pixels are
        independent Poisson counts.
    """
    x = np.asarray(log_mu, dtype=np.float64)
    dev = np.array([float(np.sum(t, dtype=np.float64)) for t in terms])
    i_min = int(np.argmin(dev))
    ref = np.asarray(terms[i_min], dtype=np.float64).ravel()
    se = np.array([np.sqrt(ref.size * np.var(np.asarray(t, dtype=np.float64).ravel() - ref)) for t in terms])
    chosen = float(x[i_min])
    order = np.argsort(x)
    k = int(np.flatnonzero(order == i_min)[0])
    if 0 < k < len(x) - 1:
        nb = order[k - 1 : k + 2]
        a, b, _ = np.polyfit(x[nb], dev[nb], 2)
        if a > 0:
            chosen = float(np.clip(-b / (2 * a), x[nb[0]], x[nb[2]]))
    return chosen, i_min, se


def thinning_cv(prob, z, tol, budget, bar, history, *, fit, seed=0):
    """μ by Poisson-thinning cross-validation, chosen by :func:`ladder_choice`.

    A ladder of μ (factors of :data:`_CV_STEP`, each fit continuing from the last) is fitted to ``b₁`` with
    the HAADF term halved too (its σ times √2: the objective of a series at half the dose) and scored by the
    deviance its prediction ``s/2 · A u`` leaves on ``b₂``. It goes down from :func:`initial_mu` / 3 until
    the held-out deviance rises (or up, where it rises at once). Each fit stops when converged or after
    ``budget / _CV_FIT_SHARE`` iterations (not before :data:`_CV_MIN_ITER`), the ladder after
    :data:`_CV_MAX_STEPS` fits or when it has spent ``budget``.
    ``fit(problem, z, n_bounded, n_iter, tol, bar, history, state, min_iter)`` is the solver.

    Returns (μ for the half dose, the fit to ``b₁`` nearest it, the ladder's [(μ, held-out deviance)...],
    a dict of the ladder's diagnostics: ``se``, the standard error of each point's held-out deviance minus
    the lowest one's, and ``iterations``, each fit's).
    """
    rng = np.random.default_rng(seed)
    b = np.rint(prob.counts).astype(np.int64)
    b1 = rng.binomial(b, 0.5)
    b2 = (b - b1).astype(np.float64)
    half = type(prob)(b1.astype(np.float64), prob.s / 2.0, prob.h, prob.angles, prob.voxel, prob.shape, prob.reg,
                      prob.mu, prob.eps)  # fmt: skip
    half.w, half.c, half.gamma = prob.w, prob.c, prob.gamma
    half.sigma_h = None if prob.sigma_h is None else prob.sigma_h * np.sqrt(2.0)

    def held_out(zz):
        u, _ = half.split(zz)
        lam = half.edxs_lambda(project_volume(u, half.angles, half.voxel))
        return 2.0 * obj.poisson_deviance_terms(lam, b2)[0]

    xs, terms, fits, its_used = [], [], [], []
    state, start = {}, len(history)
    cap = max(1, budget // _CV_FIT_SHARE)
    step = np.log(_CV_STEP)

    def rung(log_mu, z0):
        its = min(cap, budget - (len(history) - start))
        if its < 1 or len(xs) >= _CV_MAX_STEPS:
            return None
        half.mu = float(np.exp(log_mu))
        state.pop("memory", None)  # the curvature pairs of another μ stop the next fit after a few small steps
        n0 = len(history)
        zz, _ = fit(half, z0, half.n_u, its, _CV_TOL_FACTOR * tol, bar, history, state, min_iter=min(_CV_MIN_ITER, its))
        its_used.append(len(history) - n0)
        xs.append(log_mu)
        terms.append(held_out(zz))
        fits.append(zz)
        return zz

    def dev(i):
        return float(terms[i].sum())

    log_mu, direction = np.log(initial_mu(half, z) / _CV_STEP), -1.0
    while (z := rung(log_mu, z)) is not None:
        if len(xs) == 2 and dev(1) > dev(0) and direction < 0:  # started below the best: go up instead
            for lst in (xs, terms, fits, its_used):
                lst.reverse()
            direction, z = 1.0, fits[-1]
            log_mu = xs[-1] + step
            continue
        if len(xs) >= 3 and dev(-1) > dev(-2):
            break
        log_mu += direction * step
    best, i_min, se = ladder_choice(xs, terms)
    nearest = int(np.argmin(np.abs(np.array(xs) - best)))
    ladder = [(float(np.exp(x)), dev(i)) for i, x in enumerate(xs)]
    return float(np.exp(best)), fits[nearest], ladder, {"se": se.tolist(), "iterations": its_used}


def initial_mu(prob, z):
    """A first weight: the regulariser's mean gradient a tenth of the EDXS term's, at the start."""
    h, mu0 = prob.h, prob.mu
    prob.h, prob.mu = None, 0.0
    _, g_data = prob(z)
    prob.h, prob.mu = h, mu0
    u, w = prob.split(z)
    _, ru, _ = obj.regulariser(prob.reg, u, w, prob.eps)
    gd = np.abs(g_data[: prob.n_u]).mean()
    gr = np.abs(ru).mean()
    return float(0.1 * gd / gr) if gr > 0 and gd > 0 else 1.0
