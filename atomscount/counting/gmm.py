"""Gaussian mixtures with one shared width, fitted for G = 1..G_max, and order selection.

Statistical atom counting (Van Aert et al. 2011, De Backer et al. 2013): the SCS
of the columns are modelled as draws from a mixture of Gaussians, one component
per atom count present, all with the same width. For every number of components
G the mixture is fitted by EM from several starts and the best likelihood kept;
G is chosen from the integrated classification likelihood

    ICL(G) = -2 log L + 2 EN(tau) + d ln n,    d = 2G  (G means, G - 1 weights, 1 width)

where EN(tau) = -sum_i sum_g tau_ig ln tau_ig is the classification entropy.
"""

from __future__ import annotations

import dataclasses
import numbers

import numpy as np

from .._checks import check_integer, check_positive, check_real, check_real_array, check_rng
from ._em import responsibilities, run_em
from ._inputs import check_scs_magnitude, round_scs

__all__ = ["MixtureScan", "fit_mixtures", "local_minima"]

AUTO_BINS = 2000
LATTICE_TRIAL = 200  # EM steps the evenly spaced start gets to overtake the best start before it is finished


@dataclasses.dataclass(frozen=True, repr=False)
class MixtureScan:
    """Best mixture for each number of components G = 1..g_max.

    Attributes
    ----------
    n_components : ndarray (g_max,)
        1..g_max.
    loglik, entropy : ndarray (g_max,)
        Log-likelihood and classification entropy of the best start.
    means : list of ndarray
        Sorted component means for each G.
    weights : list of ndarray
    width : ndarray (g_max,)
        Shared standard deviation (the part that does not scale with dose).
    n : int
        Number of data points (columns; frames times columns for a time series).
    dose : float or None
        Dose of the dose-dependent widths, ``sigma_g^2 = sigma^2 + mean_g / dose``.
    n_starts : int
    iterations : ndarray (g_max,)
        EM steps of the kept start.
    converged : ndarray (g_max,) of bool
        False where EM stopped at ``max_iter`` (common far above the physical G,
        where surplus components drain slowly).
    icl_step_sd : ndarray (g_max,) or None
        Standard deviation of ``icl[G-1] - icl[G-2]`` from the spread of the
        columns' contributions to it (``sqrt(n)`` times their standard
        deviation; NaN for G = 1): how deep a local minimum of the ICL curve
        must be to stand out of its statistical noise, which grows like
        ``sqrt(n)``.
    """

    n_components: np.ndarray
    loglik: np.ndarray
    entropy: np.ndarray
    means: list
    weights: list
    width: np.ndarray
    n: int
    dose: float | None
    n_starts: int
    iterations: np.ndarray
    converged: np.ndarray | None = None
    icl_step_sd: np.ndarray | None = None

    @property
    def n_params(self) -> np.ndarray:
        return 2 * self.n_components

    @property
    def icl(self) -> np.ndarray:
        return -2 * self.loglik + 2 * self.entropy + self.n_params * np.log(self.n)

    @property
    def bic(self) -> np.ndarray:
        return -2 * self.loglik + self.n_params * np.log(self.n)

    @property
    def aic(self) -> np.ndarray:
        return -2 * self.loglik + 2 * self.n_params

    def component_sd(self, g: int) -> np.ndarray:
        """Standard deviation of each component of the G-component mixture."""
        i = check_integer(g, "g", low=1, high=len(self.n_components)) - 1
        extra = 0.0 if not self.dose else np.maximum(self.means[i], 0) / self.dose
        return np.sqrt(self.width[i] ** 2 + extra)

    def posterior(self, scs, g: int) -> np.ndarray:
        """Responsibilities (n, g) of the G-component mixture for ``scs``."""
        i = check_integer(g, "g", low=1, high=len(self.n_components)) - 1
        inv_dose = 0.0 if not self.dose else 1.0 / self.dose
        return responsibilities(np.asarray(scs, dtype=np.float64), self.means[i].copy(), self.weights[i].copy(),
                                float(self.width[i] ** 2), inv_dose)  # fmt: skip

    def __repr__(self) -> str:
        return f"MixtureScan(G=1..{len(self.n_components)}, n={self.n})"


def _insertion_starts(means, weights, var, x, n_insert, n_split):
    """Starts for G components from the best G-1 solution.

    As in StatSTEM, a new mean goes between two neighbouring means (or beyond
    the ends), in the ``n_insert`` widest gaps. Where the components already
    tile the data without gaps (a merged pair of counts hides inside one
    component), the ``n_split`` heaviest components are also split in two, at
    their mean plus and minus half a width.
    """
    lo, hi = x[0], x[-1]
    sd = np.sqrt(var)
    edges = np.concatenate([[min(lo, means[0] - 2 * sd)], means, [max(hi, means[-1] + 2 * sd)]])
    gaps = np.diff(edges)
    starts = []
    for j in np.argsort(gaps)[::-1][:n_insert]:
        if j == 0:
            new = means[0] - 0.5 * max(gaps[0], sd)
        elif j == len(means):
            new = means[-1] + 0.5 * max(gaps[-1], sd)
        else:
            new = 0.5 * (edges[j] + edges[j + 1])
        m = np.append(means, new)
        w = np.append(weights * (1 - 1 / (len(means) + 1)), 1 / (len(means) + 1))
        order = np.argsort(m)
        starts.append((m[order], w[order] / w.sum(), var))
    for j in np.argsort(weights)[::-1][:n_split]:
        m = np.concatenate([np.delete(means, j), [means[j] - 0.5 * sd, means[j] + 0.5 * sd]])
        w = np.concatenate([np.delete(weights, j), [weights[j] / 2, weights[j] / 2]])
        order = np.argsort(m)
        starts.append((m[order], w[order], var))
    return starts


def _random_start(x, g, rng, spread, min_var):
    """Means at ``g`` sorted random quantiles of the data, equal weights."""
    q = np.sort(rng.uniform(0, 1, g))
    m = np.quantile(x, q)
    m += rng.normal(0, 1e-6 * spread, g)
    var = max(((x[-1] - x[0]) / (2 * g)) ** 2, min_var)
    return np.sort(m), np.full(g, 1 / g), var


def _lattice_start(x, w, g, min_var):
    """Means evenly spaced across the central 99.6 % of the data, equal weights, a width of a quarter step.

    Inserting one mean into the best (G-1)-component solution keeps its shared
    width, which is that of merged counts: far above a few components, EM from
    such starts stays with wide, merged components (on a 5,901-column Au rod
    the width stuck at 0.9 single-atom steps from G = 46 to 80, and neither
    quantile-spaced nor random starts left it). SCS grow nearly linearly with
    the count, so G evenly spaced narrow components start close to one count
    each, and EM from them reaches the resolved mixture (on that rod, the
    likelihood of the expert's 69 components).
    """
    cw = np.cumsum(w)
    lo, hi = x[np.minimum(np.searchsorted(cw, np.array([0.002, 0.998]) * cw[-1]), x.size - 1)]
    if not hi > lo:
        lo, hi = x[0], x[-1]
    m = np.linspace(lo, hi, g) if g > 1 else np.array([0.5 * (lo + hi)])
    step = (hi - lo) / max(g - 1, 1)
    return m, np.full(g, 1 / g), max((step / 4) ** 2, min_var)


def _bin(x, w, n_bins):
    """Sorted ``x`` with weights ``w`` gathered into bins of width robust range / ``n_bins``.

    Each non-empty bin is represented by the weighted mean of its values and
    their summed weight. The bins span the whole data, so outliers cost bins of
    their own rather than coarser bins for the bulk.
    """
    lo, hi = np.quantile(x, [0.005, 0.995])
    h = (hi - lo) / n_bins
    if not h > 0:
        return x, w
    idx = np.floor((x - x[0]) / h).astype(np.int64)
    starts = np.flatnonzero(np.concatenate([[True], np.diff(idx) > 0]))
    wsum = np.add.reduceat(w, starts)
    keep = wsum > 0
    xsum = np.add.reduceat(w * x, starts)
    xb = np.where(keep, xsum / np.where(keep, wsum, 1.0), x[starts])
    return xb[keep], wsum[keep]


def fit_mixtures(scs, *, max_components: int = 50, n_starts: int = 6, dose: float | None = None,
                 sample_weights=None, rng=None, burn_in: int = 8, max_iter: int = 1000, tol: float = 1e-8,
                 n_finish: int = 1, bins: int | str | None = "auto",
                 progress: bool = False) -> MixtureScan:  # fmt: skip
    """Fit shared-width Gaussian mixtures for G = 1..max_components.

    For each G, the starts are the best (G-1)-component solution with one new
    mean inserted in one of its widest gaps or one of its heaviest components
    split in two (``n_starts - 2`` of these), one start of G evenly spaced narrow
    components (see :func:`_lattice_start`)
    and one random-quantile start.
    Every start runs ``burn_in`` EM iterations; the best ``n_finish`` then run
    to convergence (change of the mean log-likelihood per point below ``tol``,
    SQUAREM-accelerated EM), as does the evenly spaced start if after 200 steps
    it leads, and the best is kept (a start whose new component
    died on top of another loses ties).

    The mixtures are fitted to the SCS rounded to 20 significant bits (a
    relative 1e-6, far below any SCS error); their likelihood and entropy are
    then those of the exact SCS. Far above the physical G, EM is chaotic, and
    without the rounding a change of 1e-13 in the SCS could move the ICL there
    by 100 (see :func:`atomscount.counting._inputs.round_scs`).

    Parameters
    ----------
    scs : array_like (n,)
        Finite, the largest absolute value within 1e-12..1e12 [Å²].
    max_components : int
        G_max (>= 1).
    n_starts : int
        Starts per G (at least 2).
    dose : float, optional
        Electron dose [e/Å²], > 0: each component's variance becomes
        ``sigma^2 + mean_g / dose`` (Poisson noise of a column with that SCS).
    sample_weights : array_like (n,), optional
        Weight of each data point (for example a histogram's counts): finite,
        >= 0, not all zero.
    rng : Generator, int or None
    burn_in : int
        EM steps every start takes before the best are finished (>= 0).
    max_iter : int
        Largest number of EM steps of a finishing start (>= 1).
    tol : float
        Convergence threshold on the change of the mean log-likelihood per point (>= 0).
    n_finish : int
        Starts run to convergence (>= 1).
    progress : bool
        Show a progress bar over G.
    bins : "auto", int or None
        Fast path for many values: EM runs on a histogram of ``bins`` bins
        across the central 99 % of the data (each bin at the weighted mean of
        its values), then every G's mixture takes two EM steps on the exact
        data, and its likelihood and entropy are those of the exact data. The
        bins are far narrower than any component (2,000 bins over the range of
        30 counts: each is under 1/60 of an increment), so the likelihood is
        essentially the exact one. ``"auto"``: 2,000 bins when there are more
        than 4,000 values; ``None``: always exact.

    Returns
    -------
    MixtureScan

    Raises
    ------
    ValueError
        For empty or non-finite SCS, SCS beyond the range above, or an argument
        outside its range (the message names it and the value).
    TypeError
        If an integer argument is not an integer, or a real one not a real number.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.integers(1, 5, 400) + rng.normal(0, 0.1, 400)
    >>> scan = fit_mixtures(x, max_components=6, rng=0)
    >>> int(np.argmin(scan.icl)) + 1, np.round(scan.means[3], 1).tolist()
    (4, [1.0, 2.0, 3.0, 4.0])
    """
    from tqdm.auto import tqdm

    rng = check_rng(rng)
    x = check_real_array(scs, "scs").ravel()
    if x.size == 0:
        raise ValueError("scs must not be empty")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"scs must be finite, got {int((~np.isfinite(x)).sum())} NaN/inf")
    check_scs_magnitude(x, "scs")
    max_components = check_integer(max_components, "max_components", low=1)
    n_starts = check_integer(n_starts, "n_starts", low=2)
    if dose is not None:
        dose = check_positive(dose, "dose")
    burn_in = check_integer(burn_in, "burn_in", low=0)
    max_iter = check_integer(max_iter, "max_iter", low=1)
    tol = check_real(tol, "tol", low=0.0)
    n_finish = check_integer(n_finish, "n_finish", low=1)
    w = np.ones_like(x) if sample_weights is None else check_real_array(sample_weights, "sample_weights").ravel()
    if w.shape != x.shape or not np.all(np.isfinite(w) & (w >= 0)) or not w.sum() > 0:
        lo, hi = np.min(w, initial=np.inf), np.max(w, initial=-np.inf)
        raise ValueError(f"sample_weights must be finite, >= 0 and not all zero, with the shape of scs {x.shape}, "
                         f"got shape {w.shape}, range {lo:.3g}..{hi:.3g}")  # fmt: skip
    if isinstance(bins, str) and bins == "auto":
        bins = AUTO_BINS if x.size > 2 * AUTO_BINS else None
    if bins is not None:
        want = f"bins must be 'auto', None or an integer >= 10, got {bins!r}"
        if isinstance(bins, bool) or not isinstance(bins, numbers.Integral):
            raise TypeError(want)
        if bins < 10:
            raise ValueError(want)
    order = np.argsort(x, kind="stable")
    x_exact, w_exact = x[order], w[order]
    x, w = round_scs(x_exact), w_exact  # still sorted: rounding keeps the order
    if bins is not None:
        x, w = _bin(x, w, int(bins))
    inv_dose = 0.0 if dose is None else 1.0 / dose
    spread = max(x[-1] - x[0], 1e-12 * max(abs(x[0]), abs(x[-1])))
    min_var = (1e-4 * spread) ** 2
    # the noise of the ICL steps is estimated on at most a histogram's worth of points (memory ~ points x G)
    x_terms, w_terms = (x, w) if x.size <= 2 * AUTO_BINS else _bin(x, w, AUTO_BINS)
    results = {k: [] for k in ("loglik", "entropy", "means", "weights", "width", "iterations", "step_sd")}
    prev = None
    terms_prev = None
    for g in tqdm(range(1, max_components + 1), desc="Gaussian mixtures", unit=" G", disable=not progress):
        lattice = -1
        if g == 1:
            mean = np.average(x, weights=w)
            starts = [(np.array([mean]), np.array([1.0]), max(np.average((x - mean) ** 2, weights=w), min_var))]
        else:
            n_insert = (n_starts - 2 + 1) // 2
            starts = _insertion_starts(prev[0], prev[1], prev[2], x, n_insert, n_starts - 2 - n_insert)
            lattice = len(starts)
            starts.append(_lattice_start(x, w, g, min_var))
            starts += [_random_start(x, g, rng, spread, min_var) for _ in range(n_starts - len(starts))]
        burned = []
        for j, (m, wt, v) in enumerate(starts):
            m, wt = m.copy(), wt.copy()
            ll, _, v2, _ = run_em(x, w, m, wt, float(v), inv_dose, burn_in, 0.0, min_var)
            burned.append((ll, j, m, wt, v2))
        burned.sort(key=lambda t: (-t[0], t[1]))
        # the evenly spaced start is always tried: it climbs slowly at first, out of a narrow width,
        # and loses the burn-in to the merged solutions it is there to escape. Unless among the best, it
        # first runs LATTICE_TRIAL steps (last, after the best), and on to convergence only if it then leads
        finish = burned[:n_finish] + [b for b in burned[n_finish:] if b[1] == lattice]
        best = None
        for k, (_, _, m, wt, v) in enumerate(finish):
            if k >= n_finish:
                ll, _, v, _ = run_em(x, w, m, wt, float(v), inv_dose, min(LATTICE_TRIAL, max_iter), tol, min_var)
                if ll <= best[0]:
                    continue
            ll, ent, v2, it = run_em(x, w, m, wt, float(v), inv_dose, max_iter, tol, min_var)
            # a start whose new component died on top of another is only the G-1 solution again:
            # it loses ties
            degenerate = g > 1 and (np.min(np.diff(m)) < 1e-6 * spread or np.min(wt) * w.sum() < 0.5)
            key = (ll - (1e-9 * abs(ll) + 1e-9 if degenerate else 0.0),)
            if best is None or key > best[-1]:
                best = (ll, ent, m, wt, v2, it, key)
        ll, ent, m, wt, v, it, _ = best
        prev = (m, wt, v)
        # polish binned fits on the exact data; report the likelihood and entropy of the exact data
        m, wt = m.copy(), wt.copy()
        ll, ent, v, _ = run_em(x_exact, w_exact, m, wt, float(v), inv_dose, 2 if bins is not None else 0, 0.0, min_var)
        # the noise of the ICL step from G-1 to G, from the (binned) points' contributions
        terms = _icl_terms(x_terms, w_terms, m, wt, float(v), inv_dose)
        step_sd = np.nan if terms_prev is None else _step_sd(terms_prev, terms, w_terms)
        terms_prev = terms
        for key, val in zip(results, (ll, ent, m, wt, np.sqrt(v), it, step_sd), strict=True):
            results[key].append(val)
    return MixtureScan(
        n_components=np.arange(1, max_components + 1), loglik=np.array(results["loglik"]),
        entropy=np.array(results["entropy"]), means=results["means"], weights=results["weights"],
        width=np.array(results["width"]), n=int(round(w.sum())), dose=dose, n_starts=n_starts,
        iterations=np.array(results["iterations"]), converged=np.array(results["iterations"]) < max_iter,
        icl_step_sd=np.array(results["step_sd"]),
    )  # fmt: skip


def _icl_terms(x, w, means, weights, var, inv_dose):
    """Each point's contribution to the ICL: ``-2 log f(x) + 2 (entropy of its responsibilities)``."""
    v = var + np.maximum(means, 0.0) * inv_dose
    lp = np.log(np.maximum(weights, 1e-300)) - 0.5 * np.log(2 * np.pi * v) - 0.5 * (x[:, None] - means) ** 2 / v
    top = lp.max(axis=1, keepdims=True)
    lse = top[:, 0] + np.log(np.exp(lp - top).sum(axis=1))
    logt = lp - lse[:, None]
    ent = -np.sum(np.exp(logt) * np.maximum(logt, -745.0), axis=1)
    return -2 * lse + 2 * ent


def _step_sd(prev, cur, w):
    """sqrt(n) times the weighted standard deviation of the per-point ICL differences."""
    d = cur - prev
    mean = np.sum(w * d) / np.sum(w)
    return float(np.sqrt(np.sum(w * (d - mean) ** 2)))


def local_minima(curve) -> np.ndarray:
    """Indices of the local minima of a 1D curve (ends included, plateaus once)."""
    c = np.asarray(curve, dtype=np.float64)
    out = []
    for i in range(len(c)):
        left = c[i - 1] if i > 0 else np.inf
        right = c[i + 1] if i < len(c) - 1 else np.inf
        if c[i] < left and c[i] <= right:
            out.append(i)
    return np.array(out, dtype=int)
