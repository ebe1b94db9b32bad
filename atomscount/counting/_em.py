"""numba kernels: EM for a one-dimensional Gaussian mixture with a shared width.

The data are sorted once. Each E-step only visits the components within
``WINDOW`` standard deviations of a point (the means are kept sorted, so two
moving pointers find them); the dropped terms are below exp(-WINDOW²/2) of the
nearest component's, about 1e-11 of a point's likelihood. The nearest
component is always kept, so a point far from every component still counts.

Component variance: ``var + extra[g]``, where ``extra`` is zero for the plain
shared-width model and ``mean_g / dose`` for the dose-dependent one.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

WINDOW = 7.0
LOG_2PI = math.log(2.0 * math.pi)


@njit(cache=True)
def _extra(means, inv_dose, out):
    for g in range(means.size):
        out[g] = max(means[g], 0.0) * inv_dose


@njit(cache=True, fastmath=True)
def _pass(x, w, means, logw, var, extra, acc_n, acc_s, acc_ss, want_entropy):
    """One E-step pass over sorted ``x`` with weights ``w``.

    Fills ``acc_n/acc_s/acc_ss`` (responsibility sums of 1, x, x²) and returns
    (log-likelihood, classification entropy).
    """
    n = x.size
    k = means.size
    acc_n[:] = 0.0
    acc_s[:] = 0.0
    acc_ss[:] = 0.0
    vmax = var + extra.max()
    half = WINDOW * math.sqrt(vmax)
    lognorm = np.empty(k)
    inv2v = np.empty(k)
    for g in range(k):
        v = var + extra[g]
        lognorm[g] = logw[g] - 0.5 * (LOG_2PI + math.log(v))
        inv2v[g] = 0.5 / v
    lp = np.empty(k)
    lo = 0
    hi = 0
    loglik = 0.0
    entropy = 0.0
    for i in range(n):
        xi = x[i]
        while lo < k - 1 and means[lo] < xi - half:
            lo += 1
        if hi < lo:
            hi = lo
        while hi < k and means[hi] <= xi + half:
            hi += 1
        a = lo
        b = hi
        if b <= a:  # no component in the window: keep the nearest one
            if a >= k:
                a = k - 1
            if a > 0 and abs(means[a - 1] - xi) < abs(means[a] - xi):
                a -= 1
            b = a + 1
        m = -np.inf
        for g in range(a, b):
            d = xi - means[g]
            lp[g] = lognorm[g] - d * d * inv2v[g]
            if lp[g] > m:
                m = lp[g]
        s = 0.0
        for g in range(a, b):
            s += math.exp(lp[g] - m)
        lse = m + math.log(s)
        wi = w[i]
        loglik += wi * lse
        for g in range(a, b):
            t = math.exp(lp[g] - lse)
            tw = t * wi
            acc_n[g] += tw
            acc_s[g] += tw * xi
            acc_ss[g] += tw * xi * xi
            if want_entropy and t > 1e-300:
                entropy -= tw * math.log(t)
    return loglik, entropy


@njit(cache=True)
def _em_step(x, w, total, means, weights, var, inv_dose, min_var, acc_n, acc_s, acc_ss, extra, logw, fixed_means):
    """One EM step in place; returns (log-likelihood at the input parameters, new variance).

    With ``fixed_means`` only the weights and the variance are updated.
    """
    k = means.size
    _extra(means, inv_dose, extra)
    for g in range(k):
        logw[g] = math.log(max(weights[g], 1e-300))
    loglik, _ = _pass(x, w, means, logw, var, extra, acc_n, acc_s, acc_ss, False)
    resid = 0.0
    ext = 0.0
    for g in range(k):
        weights[g] = acc_n[g] / total
        if acc_n[g] > 1e-10 * total and not fixed_means:
            means[g] = acc_s[g] / acc_n[g]
        resid += acc_ss[g] - 2.0 * means[g] * acc_s[g] + means[g] * means[g] * acc_n[g]
        ext += acc_n[g] * extra[g]
    # shared part of the variance; with a dose term this is a moment estimate
    var = max((resid - ext) / total, min_var)
    order = np.argsort(means)
    means[:] = means[order]
    weights[:] = weights[order]
    return loglik, var


@njit(cache=True)
def _loglik(x, w, means, weights, var, inv_dose, acc_n, acc_s, acc_ss, extra, logw, want_entropy):
    _extra(means, inv_dose, extra)
    for g in range(means.size):
        logw[g] = math.log(max(weights[g], 1e-300))
    return _pass(x, w, means, logw, var, extra, acc_n, acc_s, acc_ss, want_entropy)


@njit(cache=True)
def run_em(x, w, means, weights, var, inv_dose, max_iter, tol, min_var, fixed_means=False):
    """EM from the given start, in place, accelerated by SQUAREM (Varadhan & Roland 2008).

    Each cycle takes two EM steps, extrapolates along them, projects back onto
    valid parameters and takes one stabilising EM step; a cycle that would lower
    the likelihood falls back to the plain EM steps. ``max_iter`` counts EM
    steps; ``tol`` is on the change of the mean log-likelihood per point. With
    ``fixed_means`` (sorted, e.g. a scaled library) only the weights and the
    shared variance are fitted. Returns (loglik, entropy, var, EM steps).
    """
    k = means.size
    total = w.sum()
    acc_n = np.empty(k)
    acc_s = np.empty(k)
    acc_ss = np.empty(k)
    extra = np.zeros(k)
    logw = np.empty(k)
    p = 2 * k + 1
    t0 = np.empty(p)
    t1 = np.empty(p)
    t2 = np.empty(p)
    steps = 0
    prev = -np.inf
    while steps < max_iter:
        t0[:k] = means
        t0[k : 2 * k] = weights
        t0[2 * k] = var
        ll0, var = _em_step(
            x, w, total, means, weights, var, inv_dose, min_var, acc_n, acc_s, acc_ss, extra, logw, fixed_means
        )
        t1[:k] = means
        t1[k : 2 * k] = weights
        t1[2 * k] = var
        ll1, var = _em_step(
            x, w, total, means, weights, var, inv_dose, min_var, acc_n, acc_s, acc_ss, extra, logw, fixed_means
        )
        t2[:k] = means
        t2[k : 2 * k] = weights
        t2[2 * k] = var
        steps += 2
        if abs(ll1 - ll0) < tol * total or steps >= max_iter or max_iter < 8:
            if abs(ll1 - prev) < tol * total or steps >= max_iter or max_iter < 8:
                break
        prev = ll1
        rr = 0.0
        vv = 0.0
        for j in range(p):
            r = t1[j] - t0[j]
            v = t2[j] - 2.0 * t1[j] + t0[j]
            rr += r * r
            vv += v * v
        if vv <= 0.0 or rr <= 0.0:
            continue
        alpha = -math.sqrt(rr / vv)
        if alpha > -1.0:
            alpha = -1.0
        for j in range(p):
            r = t1[j] - t0[j]
            v = t2[j] - 2.0 * t1[j] + t0[j]
            t1[j] = t0[j] - 2.0 * alpha * r + alpha * alpha * v
        # project onto valid parameters
        s = 0.0
        for g in range(k):
            t1[k + g] = max(t1[k + g], 1e-12)
            s += t1[k + g]
        for g in range(k):
            t1[k + g] /= s
        t1[2 * k] = max(t1[2 * k], min_var)
        order = np.argsort(t1[:k])
        means[:] = t1[:k][order]
        weights[:] = t1[k : 2 * k][order]
        var_x = t1[2 * k]
        ll_x, var_x = _em_step(x, w, total, means, weights, var_x, inv_dose, min_var, acc_n, acc_s, acc_ss, extra,
                               logw, fixed_means)  # fmt: skip
        steps += 1
        if ll_x >= ll1:
            var = var_x
        else:  # fall back to the second plain EM step
            means[:] = t2[:k]
            weights[:] = t2[k : 2 * k]
            var = t2[2 * k]
    loglik, entropy = _loglik(x, w, means, weights, var, inv_dose, acc_n, acc_s, acc_ss, extra, logw, True)
    return loglik, entropy, var, steps


@njit(cache=True, fastmath=True)
def responsibilities(x, means, weights, var, inv_dose):
    """Full posterior matrix (n, k) for unsorted ``x``; rows sum to one."""
    n = x.size
    k = means.size
    out = np.empty((n, k))
    extra = np.zeros(k)
    _extra(means, inv_dose, extra)
    for i in range(n):
        m = -np.inf
        for g in range(k):
            v = var + extra[g]
            d = x[i] - means[g]
            lp = math.log(max(weights[g], 1e-300)) - 0.5 * (LOG_2PI + math.log(v)) - 0.5 * d * d / v
            out[i, g] = lp
            if lp > m:
                m = lp
        s = 0.0
        for g in range(k):
            out[i, g] = math.exp(out[i, g] - m)
            s += out[i, g]
        for g in range(k):
            out[i, g] /= s
    return out
