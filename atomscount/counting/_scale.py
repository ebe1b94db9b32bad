"""The library's scale against the SCS: a scan over scales, the library-tied mixture's EM, and posteriors in chunks.

Everything here works on binned SCS (a few thousand bins however many columns),
so that 10⁶ columns cost no more memory than their own arrays; only the final
posterior is computed per column, a chunk at a time.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

#: Columns up to this many are fitted one by one; more are gathered into bins this fine.
EXACT_COLUMNS = 4000
BINS = 4000
#: Columns per chunk of the final posterior: bounds the temporary (chunk, counts) arrays to a few MB each.
CHUNK = 20000


def bin_columns(x, e, n_bins: int = BINS):
    """(x, weight, mean e²) of bins of width range / ``n_bins``, or the columns themselves when few.

    A bin holds columns within 1/``n_bins`` of the SCS range of each other (far
    below one atom's step); its mean squared error stands for theirs, which the
    likelihood needs only through ``e² + t²``.
    """
    x = np.asarray(x, dtype=np.float64)
    e2 = np.asarray(e, dtype=np.float64) ** 2
    if x.size <= EXACT_COLUMNS:
        return x, np.ones(x.size), e2
    lo, hi = float(x.min()), float(x.max())
    h = (hi - lo) / n_bins
    if not h > 0:
        return np.array([lo]), np.array([float(x.size)]), np.array([float(e2.mean())])
    idx = np.minimum(((x - lo) / h).astype(np.int64), n_bins - 1)
    w = np.bincount(idx, minlength=n_bins).astype(np.float64)
    keep = w > 0
    xb = np.bincount(idx, weights=x, minlength=n_bins)[keep] / w[keep]
    eb = np.bincount(idx, weights=e2, minlength=n_bins)[keep] / w[keep]
    return xb, w[keep], eb


def hybrid_em(x, w, e2, tab, scale, offset, t2, fit_scale, fit_offset, prior_sd, max_iter, tol, min_var,
              weights=None, bounds=None):  # fmt: skip
    """EM for the library-tied mixture on weighted (binned) SCS; bin ``i`` has variance ``e2_i + t2``.

    Component ``N`` has mean ``scale * tab[N] + offset`` and a free weight. With
    ``fit_scale`` the scale is fitted (with a Gaussian prior of ``prior_sd`` about 1
    when given, and within ``bounds`` when given), else held. Without SCS errors
    ``t2`` stays above ``min_var``. Returns (log-likelihood, scale, offset, extra
    sd, weights).

    The bounds matter: with free weights and nothing to pay per component, the
    likelihood of noisy SCS keeps rising as the scale shrinks and more library
    values fall within the data (an Au rod at 0.4 steps of noise ran from the
    right scale to 0.84 of it). The scan over scales pays for every value in
    range (BIC), so the EM only refines its scale, within a few per cent.
    """
    k = len(tab)
    total = float(w.sum())
    weights = np.full(k, 1.0 / k) if weights is None else np.asarray(weights, dtype=float).copy()
    lam = 0.0 if prior_sd is None else 1.0 / prior_sd**2
    no_errors = not np.any(e2 > 0)
    prev = -np.inf
    ll = -np.inf
    for _ in range(max_iter):
        var = (e2 + t2)[:, None]
        mu = scale * tab + offset
        logp = np.log(np.maximum(weights, 1e-300)) - 0.5 * (x[:, None] - mu) ** 2 / var - 0.5 * np.log(var)
        lse = logsumexp(logp, axis=1, keepdims=True)
        ll = float(w @ lse[:, 0] - 0.5 * total * np.log(2 * np.pi))
        if prior_sd is not None:
            ll -= 0.5 * (np.log(scale) / prior_sd) ** 2
        tau = np.exp(logp - lse) * w[:, None]
        weights = tau.sum(axis=0) / total
        if fit_scale or fit_offset:
            # weighted least squares of x on (L, 1), weights tau / var, plus the scale prior
            wt = tau / var
            per_count = wt.sum(axis=0)
            sxx = float(per_count @ tab**2) + lam
            sx = float(per_count @ tab)
            s1 = float(per_count.sum())
            sxy = float(x @ (wt @ tab)) + lam
            sy = float(x @ wt.sum(axis=1))
            if fit_scale and fit_offset:
                det = sxx * s1 - sx * sx
                scale = (sxy * s1 - sx * sy) / det
                offset = (sxx * sy - sx * sxy) / det
            elif fit_scale:
                scale = (sxy - offset * sx) / sxx
            else:
                offset = (sy - scale * sx) / s1
            if fit_scale and bounds is not None and not bounds[0] <= scale <= bounds[1]:
                scale = min(max(scale, bounds[0]), bounds[1])
                if fit_offset:
                    offset = (sy - scale * sx) / s1
        mu = scale * tab + offset
        # extra spread beyond the SCS errors (moment estimate, >= 0)
        t2 = max(float(np.sum(tau * ((x[:, None] - mu) ** 2 - e2[:, None]))) / total, 0.0)
        if no_errors:
            t2 = max(t2, min_var)
        if abs(ll - prev) < tol * total:
            break
        prev = ll
    return ll, float(scale), float(offset), float(np.sqrt(t2)), weights


def assign_in_chunks(x, ok, count_values, log_prob):
    """Counts (-1 where not counted), their probability and the posterior, a chunk of columns at a time.

    ``log_prob(index)`` gives the unnormalised log posterior (len(index), k) of
    the counted columns ``index``. Raises rather than return NaN probabilities:
    a posterior that is not finite means the SCS defeated the arithmetic.
    """
    count_values = np.asarray(count_values)
    k = len(count_values)
    counts = np.full(x.shape, -1, dtype=np.int64)
    prob = np.zeros(x.shape)
    post = np.zeros((x.size, k))
    rows = np.flatnonzero(ok)
    for start in range(0, rows.size, CHUNK):
        idx = rows[start : start + CHUNK]
        logp = log_prob(idx)
        logp -= logsumexp(logp, axis=1, keepdims=True)
        p = np.exp(logp, out=logp)
        if not np.all(np.isfinite(p)):
            bad = int(np.sum(~np.all(np.isfinite(p), axis=1)))
            raise ValueError(f"the posterior of {bad} of {idx.size} columns is not finite for scs within "
                             f"{np.min(x[ok]):.3g}..{np.max(x[ok]):.3g}: the SCS (or their errors) are too far from "
                             "the scale of the model to count")  # fmt: skip
        best = p.argmax(axis=1)
        counts[idx] = count_values[best]
        prob[idx] = p[np.arange(idx.size), best]
        post[idx] = p
    post.flags.writeable = False  # handed to ColumnCounts as it is (see its __post_init__)
    return counts, prob, post


def lattice_scan(xs, tab, *, coarse_step: float = 0.005, fine_step: float = 0.0005, n_candidates: int = 6):
    """The scale ``s`` whose lattice ``s * tab`` explains the SCS best, by BIC, coarse to fine.

    For every scale on a log grid from "all columns at the table's largest
    count" to "the thinnest columns at half a single atom" the binned SCS are
    fitted by a mixture whose means are the lattice values within the data's
    range, with free weights and one shared width (EM with the means fixed).
    BIC with one weight per value in range picks the scale: a finer lattice
    (every other value empty) fits no better but pays for twice the weights, a
    coarser one leaves half the columns between its values. The grid is coarse
    (``coarse_step`` in log scale) over the whole range and fine
    (``fine_step``) about its best ``n_candidates`` local minima, so any factor
    between the SCS and the table costs the same.

    Returns a dict: ``scale``, ``bic``, ``spread`` (the fitted width in
    single-atom steps), ``evidence`` (twice the log-likelihood by which the
    lattice beats the lattice of midpoints between its values), ``one`` (the
    BIC of a single Gaussian), ``range`` (the scales scanned) and ``n_scales``.
    """
    from ._em import run_em
    from .gmm import _bin

    x, w = _bin(np.sort(xs), np.ones(xs.size), 2000)
    n = xs.size
    inc = np.diff(np.concatenate([[0.0], tab]))
    x_lo, x_hi = np.quantile(xs, [0.005, 0.995])
    s_lo = x_hi / tab[-1]
    s_hi = 2 * x_lo / tab[0] if x_lo > 0 else x_hi / tab[0]
    s_hi = max(s_hi, 1.01 * s_lo)
    min_var = (1e-4 * (x[-1] - x[0])) ** 2

    def lattice_fit(s, values):
        """(log-likelihood, values in range, width in single-atom steps) of the lattice ``s * values``."""
        lattice = s * values
        sel = (lattice > x[0] - s * inc[: values.size]) & (lattice < x[-1] + s * inc[: values.size])
        k = int(sel.sum())
        if k < 2:
            return -np.inf, k, np.inf
        step = float(np.median(s * inc[: values.size][sel]))
        means, weights = lattice[sel].copy(), np.full(k, 1.0 / k)
        ll, _, var, _ = run_em(x, w, means, weights, (0.25 * step) ** 2, 0.0, 40, 1e-7, min_var, True)
        return ll, k, np.sqrt(var) / step

    def bic(s):
        ll, k, width = lattice_fit(s, tab)
        return -2 * ll + k * np.log(n), width

    coarse = np.geomspace(s_lo, s_hi, int(np.clip(np.log(s_hi / s_lo) / coarse_step, 10, 20000)))
    scores = np.array([bic(s)[0] for s in coarse])
    interior = np.r_[True, scores[1:] < scores[:-1]] & np.r_[scores[:-1] <= scores[1:], True]
    minima = np.flatnonzero(interior & np.isfinite(scores))
    minima = minima[np.argsort(scores[minima])][:n_candidates] if minima.size else [int(np.argmin(scores))]
    best_s, best_bic, best_width, tried = float(coarse[minima[0]]), np.inf, np.inf, coarse.size
    half = int(np.ceil(coarse_step / fine_step))
    for j in minima:
        fine = coarse[j] * np.exp(fine_step * np.arange(-half, half + 1))
        tried += fine.size
        for s in fine:
            b, width = bic(s)
            if b < best_bic:
                best_s, best_bic, best_width = float(s), b, width
    # a lattice of the midpoints between values fits smooth (unresolved) data as well as the values do
    evidence = 2 * (lattice_fit(best_s, tab)[0] - lattice_fit(best_s, 0.5 * (tab[1:] + tab[:-1]))[0])
    with np.errstate(divide="ignore"):  # SCS all alike: one Gaussian fits infinitely well, and no lattice beats it
        one = n * (np.log(2 * np.pi * xs.var()) + 1) + 2 * np.log(n)
    return {"scale": best_s, "bic": float(best_bic), "spread": float(best_width), "evidence": float(evidence),
            "one": float(one), "range": (float(coarse[0]), float(coarse[-1])), "n_scales": int(tried)}  # fmt: skip
