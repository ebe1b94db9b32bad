"""Choosing the number of mixture components: every G scored on the ICL and on physical consistency.

On real particles the global ICL minimum is often at G = 1-3, while experts pick
a G several components higher, the one where neighbouring components differ by
one atom. And as the columns grow in number, the ICL's entropy term (which
grows like n, as the likelihood does) moves its minimum below the physical G:
on synthetic SCS of 29 counts 0.3 steps wide, the ICL per column is lowest at
G = 27-28 from 10^5 columns on, and G = 29 is then no local minimum at all. So
every G = 1..G_max is a candidate, not only the ICL local minima, and each is
described by

* its ICL, and its depth as a local minimum: the smaller rise to G - 1 or
  G + 1, also in standard deviations of those ICL differences (from the spread
  of the columns' contributions, :attr:`MixtureScan.icl_step_sd`; the noise
  grows like sqrt(n), so a minimum is "clear" at 2 sd whatever n);
* the increments between neighbouring means against the running median of the
  five around each: under 0.5 times it, or under 0.6 times between two
  components that together hold less than 1.5 times their neighbours' median
  population, a count is split in two; over 1.7 times, two counts are merged
  (or one is absent);
* the penalties below (0 is perfect).

A G is physically consistent when every component holds one count: without a
library, at least four means, regularly spaced (``spacing`` up to 0.12), no
increment split, at most 5 % merged (where thick columns thin out), none
empty or duplicated, resolved, not narrower than the SCS errors; with one,
aligned with the library (penalty up to 0.25), none empty or duplicated.

``spacing``
    With a library, each component mean is mapped to the nearest library count
    after one fitted scale (counts absent from the data are allowed, see
    :func:`align_to_library`), and the penalty is the rms distance of the means
    from their library values in single-atom increments: merged components sit
    half-way between counts. Without a library the increments between
    neighbouring means must follow a smooth power law in the mean; the penalty
    is their median absolute log-ratio to it (up to 0.12 is "regular").
``scale`` (library only)
    The fitted scale between the component means and the library must be close
    to 1 (within 15 % costs nothing): a mixture whose components are two atoms
    apart also lines up with the library, but only at a scale near 2^p.
``absent`` (library only)
    Counts absent between present ones are only credible when the components
    are narrow: wider than 0.4 steps, or more than twice the rms SCS error, an
    absent count would hide in its neighbours' tails, and the components more
    likely hold two counts each (two neighbouring counts 0.3 steps wide merge
    into one 0.58 steps wide). Costs the fraction of the counts in range that
    are absent, times a grade rising from 0 at 0.4 steps (twice the errors) to
    1 at 0.7 steps (5.4 times the errors).
``resolution``
    A candidate whose width exceeds the step between the counts it implies
    (the library increment, or the spacing of its means) holds several counts
    per component: it costs ``1 + log(width / step)``. G = 1 is never
    physically consistent on its own: with a library one mean always lines up
    with some count (it costs 0.5 more); without one nothing can be judged
    from it, nor the spacing of G = 2-3, and these cost 0.5 when another
    candidate can be judged and is consistent (penalty up to 0.25 before
    duplicates and empty components); when none is, they are not held back.
``width``
    Components narrower than 0.8 times the rms SCS error split the columns and
    cost ``log(0.8 / ratio)``. Wider ones cost nothing: on real data the
    columns vary 2-9 times beyond their fit errors (residual thickness,
    alloying), so a width several times the errors is stated in the reasons
    and the notes, not held against the candidate.
``empty`` / ``duplicate``
    A component holding less than half a column costs 1. Two components on the
    same library count cost 0.1: a heavily populated count split in two still
    gives every column its right count. Without a library, two means closer than
    40 % of the expected increment cost 1, since they shift every count above.

Without a library nothing fixes the size of one atom's step: a mixture whose
components each hold two neighbouring counts is as regular as the true one,
and ICL prefers it (its components overlap less). The finest consistent G is
chosen, unless its ICL lies more than 0.3 per column above that of a consistent
G at least half as fine, as it does when every count is split in two (on
synthetic particles of 100-300 columns, merged-versus-true differences stay
below about 0.3 per column, split-versus-true ones mostly above). Only those
are compared: over a wide range of counts the entropy climbs steadily from a
few components to the physical G (on a 5,901-column Au rod, by 0.6 per column
from G = 4 to the expert's 69). A count split in two fails the increment test,
so the finest consistent G does not run on past the physical one as n grows.
With a library, the G with the smallest total penalty is chosen, and within
0.05 of it the finest. Without one, where no G is consistent, the clear ICL
local minima, then the rest, are ranked by penalty, then ICL.

The candidates come back ranked (the chosen first, then the next in line by
the rule), each with its reasons. The notes say which was chosen and why, which
candidates lie within 10 ICL units or 2 sd of its ICL ("G = 6 and G = 7 are
close: ..."), and the runners-up with their reasons; no reason is empty.

Columns far below the lowest component (vacuum, contamination, missed
columns) make components of their own and drive G: :func:`far_below` flags
them and :func:`leave_out_far_below` refits without them.

None of the margins above may hinge on floating-point noise. Far above the
physical G, EM is chaotic: a relative change of 1e-13 in the SCS once moved
the ICL at G = 9 by 9.9, just under ``CLOSE_ICL``, and can move it by 100
elsewhere. The curves, means and widths compared here come from mixtures
fitted to the SCS rounded to 20 significant bits (see :func:`fit_mixtures`),
so SCS that differ by such noise give the same candidates and the same G;
exact ties are broken by G, so the order never rests on the input order.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .._checks import check_increasing, check_integer, check_real_array
from .gmm import MixtureScan, local_minima

__all__ = ["Candidate", "align_to_library", "far_below", "far_below_note", "leave_out_far_below", "select_components"]

CLOSE_ICL = 10.0  # ICL units (twice log-likelihood): "very strong" evidence on Kass & Raftery's scale
REGULAR = 0.12  # median absolute log-ratio of the increments up to which means count as regularly spaced
ALIGNED = 0.25  # penalty up to which a candidate is consistent (random means sit 0.29 increments off, rms)
UNJUDGED = 0.5  # G = 1 with a library; G = 1-3 without one, against a consistent candidate
UNRESOLVED = 1.0  # components wider than the step between the counts they imply
HIDDEN = 0.4  # width in steps beyond which an absent count would start to hide between its neighbours
HIDDEN_SPAN = 0.3  # ... and fully hidden this much wider (two neighbouring counts of 0.3 steps each merge to 0.58)
WIDE = 2.0  # width over the rms SCS error beyond which the notes say the columns vary beyond their errors
TIE = 0.05  # penalties this close are a tie, broken by the lower ICL
FINER_ICL = 0.3  # ICL per column a finer regular candidate may lie above the best regular one (no library)
SPLIT = 0.6  # an increment below this fraction of its neighbours' (running median of 5) may split a count in two
MERGED = 1.7  # ... above this many times theirs, two counts are merged (or one is absent)
CLEAR = 2.0  # depth of a clear ICL local minimum, in standard deviations of the ICL difference
FAR_BELOW = 5.0  # columns this many widths (and 1.5 steps) below the lowest populated component are outliers


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One ICL local minimum, scored.

    Attributes
    ----------
    n_components : int
    icl : float
    penalty : float
        Total penalty (0 is perfect); see the module docstring.
    spacing : float
        Library misfit [single-atom increments, rms] or, without a library, the
        median absolute log-ratio of the increments to a smooth curve.
    scale : float or None
        Fitted scale between the means and the library.
    width_ratio : float or None
        Shared width over the rms SCS error.
    width_over_step : float or None
        Shared width over the step between neighbouring counts it implies.
    empty, duplicate : int
    first_count : int
    counts : tuple of int
        Count of each component.
    reason : str
        Why the candidate scored as it did; never empty.
    depth : float or None
        Depth of G as an ICL local minimum (ICL units): the smaller of the rises
        to G - 1 and G + 1; negative where G is not a local minimum.
    depth_sigma : float or None
        The same in standard deviations of the ICL differences (their noise,
        which grows like ``sqrt(n)``); a clear minimum is at least 2.
    split, merged : int
        Increments between neighbouring means that split a count in two (see
        the module docstring) or lie above 1.7 times the running median of
        their neighbours' (counts merged or absent); judged without a library.
    consistent : bool
        Physically consistent: every component one count, regularly spaced,
        resolved, none empty or split (see the module docstring).
    rank : int
        Position in the ranking (0 is the chosen G).
    """

    n_components: int
    icl: float
    penalty: float
    spacing: float
    scale: float | None
    width_ratio: float | None
    width_over_step: float | None
    empty: int
    duplicate: int
    first_count: int
    counts: tuple
    reason: str
    depth: float | None = None
    depth_sigma: float | None = None
    split: int = 0
    merged: int = 0
    consistent: bool = False
    rank: int = 0

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["counts"] = list(d["counts"])
        return d


def align_to_library(means, weights, library_scs, *, scales=None):
    """Map sorted component means onto library counts, allowing for counts absent from the data.

    ``library_scs[k]`` is the SCS of ``k + 1`` atoms. For each trial scale ``s``
    (0.8 to 1.25 by default) every mean goes to the count whose library SCS times
    ``s`` is nearest; the scale with the smallest weighted misfit (in units of
    the local single-atom increment) plus a preference for ``s`` near 1 wins, and
    is then refined by least squares on the assigned counts.

    Returns
    -------
    counts : ndarray (G,) of int
        Count of each component (increasing; gaps are allowed, repeats are duplicates).
    scale : float
    misfit : float
        Weighted rms distance of the means from their library values, in increments.

    Raises
    ------
    ValueError
        If the means are not finite, the weights not finite and >= 0 (or of
        another shape), ``library_scs`` not finite, above zero and strictly
        increasing, or ``scales`` not finite and > 0.
    """
    means = check_real_array(means, "means")
    w = check_real_array(weights, "weights")
    if means.ndim != 1 or means.size == 0 or w.shape != means.shape or not np.all(np.isfinite(means)):
        raise ValueError(f"means must be finite and 1D, with weights of their shape, got shapes {means.shape} and "
                         f"{w.shape}")  # fmt: skip
    if not np.all(np.isfinite(w) & (w >= 0)):
        raise ValueError(f"weights must be finite and >= 0, got {np.array2string(w, precision=3)}")
    w = w + 1e-12
    lib = check_increasing(library_scs, "library_scs", positive=True)
    inc = np.diff(np.concatenate([[0.0], lib]))
    grid = np.linspace(0.8, 1.25, 91) if scales is None else check_real_array(scales, "scales").ravel()
    if grid.size == 0 or not np.all(np.isfinite(grid) & (grid > 0)):
        raise ValueError(f"scales must be finite and > 0, got {np.array2string(grid, precision=3)}")

    def assign(s):
        y = means / s
        k = np.clip(np.searchsorted(lib, y), 1, len(lib) - 1)
        k = np.where(np.abs(y - lib[k - 1]) <= np.abs(y - lib[k]), k - 1, k)
        k = np.where(y > lib[-1], len(lib) - 1, k)
        mis = (y - lib[k]) / inc[k]
        return k, float(np.sqrt(np.sum(w * mis**2) / np.sum(w)))

    best, best_key = None, np.inf
    for s in grid:
        k, mis = assign(s)
        key = mis + 2 * abs(np.log(s)) + np.sum(np.diff(k) == 0)
        if key < best_key:
            best, best_key = (k, s), key
    k, s = best
    s = float(np.sum(w * means * lib[k]) / np.sum(w * lib[k] ** 2))
    k, mis = assign(s)
    return k + 1, s, mis


def _smooth_increment_penalty(means):
    """Median |log residual| of the increments about a power law in the mean SCS."""
    d = np.diff(means)
    if len(d) < 3:
        return 0.0, d
    if np.any(d <= 0):
        return 1.0, d
    mid = 0.5 * (means[1:] + means[:-1])
    ok = mid > 0
    if ok.sum() < 3:
        return float(np.median(np.abs(np.log(d / np.median(d))))), d
    coef = np.polyfit(np.log(mid[ok]), np.log(d[ok]), 1)
    smooth = np.exp(np.polyval(coef, np.log(np.maximum(mid, 1e-12))))
    return float(np.median(np.abs(np.log(d / smooth)))), smooth


def _implied_step(means, weights, lib, inc, counts, scale):
    """SCS step between neighbouring counts that a candidate implies (None for one component without a library)."""
    if lib is not None:
        steps = scale * inc[np.asarray(counts) - 1]
        return float(np.sum(weights * steps) / np.sum(weights))
    if len(means) < 2:
        return None
    return float(np.median(np.diff(means)))


def _increment_ratios(means):
    """Each increment between neighbouring means over the running median of the five around it."""
    d = np.diff(means)
    if d.size < 3:
        return np.ones_like(d)
    k = min(5, d.size)
    # the window shifts inwards at the ends, so that an end increment is judged against others
    start = np.clip(np.arange(d.size) - k // 2, 0, d.size - k)
    ref = np.median(np.lib.stride_tricks.sliding_window_view(d, k)[start], axis=1)
    return d / np.maximum(ref, 1e-300)


def _split_increments(means, weights, ratios):
    """Increments that split one count in two.

    Under 0.5 times the running median always; under 0.6 times only where the
    two components together hold less than 1.5 times the median population of
    the five around them (a count split in two shares one count's columns; on
    real particles, neighbours 0.5-0.6 steps apart, each as full as the rest,
    are irregular SCS, not a split).
    """
    w = np.asarray(weights, dtype=float)
    if ratios.size < 3:
        return 0
    pair = w[:-1] + w[1:]
    k = min(5, w.size)
    start = np.clip(np.arange(ratios.size) - k // 2, 0, w.size - k)
    ref = np.median(np.lib.stride_tricks.sliding_window_view(w, k)[start], axis=1)
    return int(np.sum((ratios < 0.5) | ((ratios < SPLIT) & (pair < 1.5 * ref))))


def _depths(icl, step_sd, n):
    """Depth of every G as a local minimum, in ICL units and in standard deviations of the ICL steps."""
    g_max = len(icl)
    sd = np.full(g_max, np.nan) if step_sd is None else np.asarray(step_sd, dtype=float)
    # without the columns' contributions (a hand-made scan), a spread of two ICL units per column is a fair guess
    sd = np.where(np.isfinite(sd) & (sd > 0), sd, 2.0 * np.sqrt(n))
    depth, sigma = np.empty(g_max), np.empty(g_max)
    for i in range(g_max):
        left = icl[i - 1] - icl[i] if i > 0 else np.inf
        right = icl[i + 1] - icl[i] if i < g_max - 1 else np.inf
        depth[i] = min(left, right)
        sigma[i] = min(left / sd[i] if i > 0 else np.inf, right / sd[i + 1] if i < g_max - 1 else np.inf)
    return depth, sigma


def far_below(scs, means, weights, width, *, n_sigma: float = FAR_BELOW):
    """Columns whose SCS lie far below the lowest component of a mixture.

    The lowest component is the lowest one attached to the rest: components at
    the bottom holding together under 2 % of the columns, and separated from
    the next by more than 2.5 steps (the median spacing of the means), are
    themselves outliers that have grabbed a component. A column is far below
    when its SCS lies more than ``n_sigma`` widths and more than 1.5 steps
    below the lowest attached mean: vacuum, amorphous carbon or a missed
    column, not one atom fewer. Such columns make components of their own and
    drive G; they are left out of the mixture.

    Parameters
    ----------
    scs : array_like (n,)
        SCS [Å²].
    means, weights : array_like (G,)
        Component means [Å²] and weights.
    width : float
        Shared width [Å²].
    n_sigma : float
        Widths below the lowest attached mean beyond which a column is an outlier (> 0).

    Returns
    -------
    ndarray (n,) of bool
        True for the columns far below.

    Raises
    ------
    ValueError
        If ``n_sigma`` is not > 0, or the means and weights differ in shape or are empty.

    Examples
    --------
    >>> import numpy as np
    >>> scs = np.array([0.002, 0.10, 0.20, 0.21, 0.30, 0.40])
    >>> far_below(scs, [0.205, 0.30, 0.40], [0.4, 0.4, 0.2], 0.01).tolist()
    [True, False, False, False, False, False]
    """
    x = np.asarray(scs, dtype=float)
    m = np.asarray(means, dtype=float).ravel()
    w = np.asarray(weights, dtype=float).ravel()
    if m.shape != w.shape or m.size == 0:
        raise ValueError(f"means and weights must have one nonzero shape, got {m.shape} and {w.shape}")
    if not (np.isfinite(n_sigma) and n_sigma > 0):
        raise ValueError(f"n_sigma must be > 0, got {n_sigma}")
    if m.size < 2:
        return np.zeros(x.shape, dtype=bool)
    order = np.argsort(m)
    m, w = m[order], w[order] / max(w.sum(), 1e-300)
    d = np.diff(m)
    step = float(np.median(d))
    low = 0
    below = np.cumsum(w)
    for k in range(m.size - 1):
        if below[k] < 0.02 and d[k] > 2.5 * step:
            low = k + 1
    return x < m[low] - max(n_sigma * float(width), 1.5 * step)


def far_below_note(n_far, n_columns, threshold=None) -> str:
    """The note for columns left out as far below the lowest component."""
    at = f" (SCS up to {threshold:.4g})" if threshold is not None else ""
    return (f"{n_far} of {n_columns} columns lie far below the lowest component{at}: vacuum, contamination or "
            "missed columns, left out of the mixture and not counted (-1)")  # fmt: skip


def leave_out_far_below(scs, scan: MixtureScan, chosen: Candidate, candidates, notes, *, refit,
                        max_refits: int = 2):  # fmt: skip
    """Leave the columns far below the lowest component out of the mixture, refitting without them.

    The chosen mixture (the BIC's where the chosen G is not physically
    consistent) flags the columns far below (:func:`far_below`); the
    mixtures are refitted and G chosen again without them, and the flagging is
    repeated on the new mixture (outliers that drove G widen the first one,
    hiding some of them), at most ``max_refits`` times.

    Parameters
    ----------
    scs : ndarray (n,)
        The SCS ``scan`` was fitted to [Å²].
    scan, chosen, candidates, notes
        The mixtures and the choice made on all of ``scs``.
    refit : callable
        ``refit(keep)`` fits the mixtures to ``scs[keep]`` and chooses G:
        returns ``(scan, (chosen, candidates, notes))``.
    max_refits : int

    Returns
    -------
    keep : ndarray (n,) of bool
        False for the columns left out.
    scan, chosen, candidates, notes
        Those of the last fit; the notes say how many columns were left out.
    """
    x = np.asarray(scs, dtype=float)
    keep = np.ones(x.size, dtype=bool)
    for _ in range(max_refits):
        # outliers can leave no G consistent (G = 1 chosen shows nothing below it): the BIC's G then
        i = chosen.n_components - 1 if chosen.consistent else int(np.argmin(scan.bic))
        far = far_below(x, scan.means[i], scan.weights[i], float(scan.width[i]))
        if not (far & keep).any() or (keep & ~far).sum() < 2:
            break
        keep &= ~far
        scan, (chosen, candidates, notes) = refit(keep)
    if not keep.all():
        notes = list(notes) + [far_below_note(int((~keep).sum()), x.size, float(x[~keep].max()))]
    return keep, scan, chosen, candidates, notes


def select_components(scan: MixtureScan, *, library_scs=None, scs_errors=None, n_columns=None,
                      override: int | None = None):  # fmt: skip
    """Choose G among all of G = 1..G_max of ``scan``; see the module docstring.

    Parameters
    ----------
    scan : MixtureScan
    library_scs : array_like, optional
        Library SCS [Å²] for 1, 2, ... atoms (extended by the thickness curve if needed).
    scs_errors : array_like, optional
        Standard errors of the columns' SCS [Å²].
    n_columns : int, optional
        Number of columns (for the empty-component test); ``scan.n`` by default.
    override : int, optional
        Use this G; the candidates are still scored and returned.

    Returns
    -------
    chosen : Candidate
    candidates : list of Candidate, best first
        Every G, each with its ICL, its depth as a local minimum (also in
        standard deviations of the ICL steps), its physical consistency and the
        reasons; ``rank`` is its position.
    notes : list of str
        Plain statements about the ICL curve (flat, several close minima), the
        choice, candidates close to it ("G = 6 and G = 7 are close: ...") and
        the runners-up.

    Raises
    ------
    ValueError
        If ``override`` is outside 1..G_max, ``n_columns`` below 1, or
        ``library_scs`` does not start above zero and increase.
    TypeError
        If ``scan`` is not a MixtureScan, or ``override`` or ``n_columns`` not an integer.
    """
    if not isinstance(scan, MixtureScan):
        raise TypeError(f"scan must be a MixtureScan (from fit_mixtures), got {type(scan).__name__}")
    icl = scan.icl
    n_cols = scan.n if n_columns is None else check_integer(n_columns, "n_columns", low=1)
    minima = set(int(i) for i in local_minima(icl))
    if override is not None:
        # named as count_atoms calls it, where users set it
        override = check_integer(override, "n_components", low=1, high=len(icl))
    depth, depth_sigma = _depths(icl, scan.icl_step_sd, scan.n)
    err_rms = None
    if scs_errors is not None:
        e = np.asarray(scs_errors, dtype=float)
        e = e[np.isfinite(e) & (e > 0)]
        err_rms = float(np.sqrt(np.mean(e**2))) if e.size else None
    lib = inc = None
    if library_scs is not None:
        lib = np.asarray(library_scs, dtype=float)
        if lib.ndim != 1 or lib.size < 2 or not np.all(np.isfinite(lib)) or lib[0] <= 0 or np.any(np.diff(lib) <= 0):
            raise ValueError("library_scs must hold the SCS of 1, 2, ... atoms: finite, above zero and increasing, "
                             f"got {np.array2string(lib.ravel()[:6], precision=4)}"
                             + ("..." if lib.size > 6 else ""))  # fmt: skip
        inc = np.diff(np.concatenate([[0.0], lib]))
    rows = []
    for i in range(len(icl)):
        g = i + 1
        means, weights, width = scan.means[i], scan.weights[i], float(scan.width[i])
        reasons = []
        scale = None
        comp_counts = np.arange(1, g + 1)
        scale_pen = gap_pen = 0.0
        gaps = 0
        ratios = _increment_ratios(means) if g >= 4 else np.ones(max(g - 1, 0))
        n_split = _split_increments(means, weights, ratios)
        n_merged = int(np.sum(ratios > MERGED))
        if lib is not None:
            comp_counts, scale, spacing = align_to_library(means, weights, lib)
            dup = int(np.sum(np.diff(comp_counts) == 0))
            scale_pen = max(0.0, abs(np.log(scale)) - np.log(1.15)) * 4
            gaps = int(comp_counts[-1] - comp_counts[0] + 1 - len(np.unique(comp_counts)))
            reasons.append(f"aligned with library counts {comp_counts[0]}..{comp_counts[-1]}"
                           + (f" ({gaps} absent)" if gaps else "") + f" at scale {scale:.3f}"
                           + (f", means off by {spacing:.2f} increments (rms)" if spacing > 0.05 else ""))  # fmt: skip
            if scale_pen > 0:
                reasons.append(f"library scale {scale:.3f} is more than 15 % from 1")
            judged = g >= 2
            if not judged:
                reasons.append("a single component: one mean always lines up with some library count")
        else:
            spacing, expected = _smooth_increment_penalty(means)
            expected = np.atleast_1d(expected) if g >= 2 else np.array([np.inf])
            dup = int(np.sum(np.diff(means) < 0.4 * np.asarray(expected))) if g >= 2 else 0
            judged = g >= 4
            if g == 1:
                reasons.append("a single component: nothing can be judged from one mean")
            elif not judged:
                reasons.append(f"too few components ({g}) to judge the spacing")
            else:
                reasons.append(("regularly" if spacing <= REGULAR else "irregularly")
                               + f" spaced means (median |log ratio| {spacing:.3f} about a smooth curve)")  # fmt: skip
                if n_split:
                    reasons.append(f"{n_split} increment(s) under {SPLIT:g}x their neighbours' (a count split in two)")
                if n_merged:
                    reasons.append(f"{n_merged} increment(s) over {MERGED:g}x their neighbours' (counts merged or "
                                   "absent)")  # fmt: skip
        step = _implied_step(means, weights, lib, inc, comp_counts, scale)
        # coincident means imply no step at all: the components are as unresolved as can be
        over_step = None if step is None else (width / step if step > 0 else np.inf)
        width_ratio = None if not err_rms else width / err_rms
        unresolved_pen = 0.0
        if over_step is not None and over_step > 1.0:
            unresolved_pen = UNRESOLVED * (1 + np.log(min(over_step, 1e12)))
            reasons.append(f"width {over_step:.2f}x the step between the counts it implies (components hold "
                           "several counts)")  # fmt: skip
        elif gaps:
            # an absent count between components wider than 0.4 steps (or several times wider than the
            # SCS errors) would hide in their tails: more likely the components hold neighbouring counts.
            # Graded, from nothing at 0.4 steps (twice the errors) to all at 0.7 steps (5.4x)
            by_width = min(1.0, np.log(width_ratio / WIDE)) if width_ratio and width_ratio > WIDE else 0.0
            hidden = max(min(1.0, (over_step - HIDDEN) / HIDDEN_SPAN) if over_step > HIDDEN else 0.0, by_width)
            gap_pen = UNRESOLVED * hidden * gaps / (gaps + g)
            if gap_pen > 0:
                wide = f"{over_step:.2f} steps" + (f", {width_ratio:.1f}x the SCS errors" if width_ratio else "")
                reasons.append(f"{gaps} absent count(s) would hide within components {wide} wide")
        empty = int(np.sum(weights * n_cols < 0.5))
        narrow_pen = 0.0
        if err_rms:
            narrow_pen = max(0.0, np.log(0.8 / width_ratio))
            if narrow_pen > 0:
                reasons.append(f"width only {width_ratio:.2f}x the rms SCS error: components split")
            elif width_ratio > WIDE:
                reasons.append(f"width {width_ratio:.1f}x the rms SCS error")
        if dup:
            reasons.append(f"{dup} duplicated component(s)")
        if empty:
            reasons.append(f"{empty} empty component(s)")
        # with a library, two components on one count only split a heavily populated count (every
        # column still gets the right count); without one they shift every count above them
        fit = spacing + scale_pen + gap_pen + narrow_pen + unresolved_pen
        if lib is not None and g == 1:  # its alignment is no evidence: never consistent on its own
            fit += UNJUDGED
        split_pen = 0.0 if lib is not None else 0.25 * n_split
        penalty = fit + empty + (0.1 * dup if lib is not None else dup) + split_pen
        if lib is not None:
            consistent = judged and fit <= ALIGNED and not empty and not dup
        else:
            # a few wide increments are allowed where the counts thin out (a tail of thick columns)
            consistent = (judged and spacing <= REGULAR and not n_split and n_merged <= 0.05 * (g - 1)
                          and not (empty or dup or narrow_pen or unresolved_pen))  # fmt: skip
        if i in minima:
            reasons.append(f"ICL local minimum, {depth[i]:.1f} deep ({depth_sigma[i]:.1f} sd of the ICL steps)")
        rows.append(dict(g=g, i=i, penalty=float(penalty), spacing=float(spacing), scale=scale, fit=float(fit),
                         width_ratio=width_ratio, over_step=over_step, empty=empty, dup=dup,
                         counts=comp_counts, judged=judged, reasons=reasons, split=n_split, merged=n_merged,
                         consistent=bool(consistent)))  # fmt: skip
    # without a library, G = 1-3 cannot be judged: not physically consistent, but only against a
    # judged candidate that is (resolved, regular, not split; duplicates and empties aside)
    ref = min((r for r in rows if r["consistent"]), key=lambda r: (r["penalty"], icl[r["i"]]), default=None)
    for r in rows:
        if ref is not None and not r["judged"] and lib is None:
            r["penalty"] += UNJUDGED
            r["reasons"].append(f"not physically consistent while G = {ref['g']} is")
        if r["consistent"]:
            r["reasons"].append("physically consistent")
        if not r["reasons"]:  # a note never ends on an empty reason
            r["reasons"].append("no physical objection found" if r["judged"] else
                                "too few components to judge, and none better judged")  # fmt: skip
    consistent = [r for r in rows if r["consistent"]]
    finest = None
    if lib is not None:
        # the library fixes the step: the best aligned, consistent or not (on noisy data no G may reach
        # the 0.25 of "consistent", and a G = 2 that does must not win for it); within TIE the finer G
        # (a split count costs more than TIE, and ICL, biased towards merged counts, would prefer the coarser)
        best = min(r["penalty"] for r in rows)
        finest = max(r["g"] for r in rows if r["penalty"] <= best + TIE)
    elif consistent:
        # nothing fixes one atom's step: components that each hold two neighbouring counts are as
        # regular as single counts, and ICL favours them (they overlap less, and at large n that
        # entropy outweighs the likelihood). The finest consistent G wins unless its ICL lies more
        # than 0.3 per column above that of a consistent G at least half as fine, as it does when every
        # count is split in two. Only those are compared: over a wide range of counts the entropy, and
        # with it the ICL, climbs steadily from a few components to the physical G
        def within(r):
            peers = [icl[q["i"]] for q in consistent if 2 * q["g"] >= r["g"] - 1 and q["g"] <= r["g"]]
            return icl[r["i"]] - min(peers) <= FINER_ICL * n_cols

        finest = max(r["g"] for r in consistent if within(r))

    def rank(r):  # G breaks exact ties, so that the order never rests on the input order
        if r["g"] == finest:
            return (0, 0.0, 0.0, 0)
        if lib is not None:  # next in line by the rule: the best aligned, then the finer
            return (1, round(r["penalty"], 9), -r["g"], 0)
        if r["consistent"]:  # next in line by the rule: the next finer
            return (1, 0.0, -r["g"], 0)
        clear = r["i"] in minima and depth_sigma[r["i"]] >= CLEAR
        return (2 + (not clear), round(r["penalty"], 9), icl[r["i"]], r["g"])

    rows.sort(key=rank)
    cands = [Candidate(r["g"], float(icl[r["i"]]), r["penalty"], r["spacing"], r["scale"], r["width_ratio"],
                       r["over_step"], r["empty"], r["dup"], int(r["counts"][0]), tuple(int(c) for c in r["counts"]),
                       "; ".join(r["reasons"]), float(depth[r["i"]]), float(depth_sigma[r["i"]]), r["split"],
                       r["merged"], r["consistent"], k) for k, r in enumerate(rows)]  # fmt: skip
    notes = []
    g_global = int(np.argmin(icl)) + 1
    span = float(np.max(icl) - np.min(icl))
    if span < CLOSE_ICL:
        notes.append(f"the ICL curve is flat (range {span:.1f} over G = 1..{len(icl)}): the data do not pick G")
    close = sorted(i + 1 for i in minima if icl[i] - icl[g_global - 1] < CLOSE_ICL)
    if len(close) > 1:
        notes.append(f"several local minima within {CLOSE_ICL:g} of the global one: G = {close}")
    if lib is None and err_rms is None:
        notes.append("no library and no SCS errors: only the spacing of the means can be judged")
    if override is not None:
        chosen = next(c for c in cands if c.n_components == override)
        notes.append(f"G = {override} set by the user")
    else:
        chosen = cands[0]
        why = chosen.reason
        if chosen.consistent and lib is None and len(consistent) > 1:
            why += (f"; the finest of the physically consistent G = {sorted(r['g'] for r in consistent)} within "
                    f"{FINER_ICL:g} ICL per column of those at least half as fine")  # fmt: skip
        elif lib is not None:
            why += "; the best aligned with the library" + ("" if chosen.consistent else ", if short of consistent")
        elif not chosen.consistent:
            why += "; no G is physically consistent, so the best scored one"
        if chosen.n_components != g_global:
            kind = "the local minimum" if chosen.n_components - 1 in minima else "(not an ICL local minimum)"
            notes.append(f"chose {kind} G = {chosen.n_components} over the global ICL minimum "
                         f"G = {g_global}: {why}")  # fmt: skip
        else:
            notes.append(f"chose the global ICL minimum G = {g_global}: {why}")
        if chosen.n_components == len(icl) and len(icl) > 1:
            notes.append(f"the chosen G is max_components = {len(icl)}: a larger limit may give a finer mixture")
    sd = scan.icl_step_sd
    n_close = 0
    for c in cands[1:]:
        minimum = c.n_components - 1 in minima and not c.empty
        if (c.consistent or minimum) and n_close < 3:
            k = chosen.n_components
            lo_g, hi_g = sorted((k, c.n_components))
            diff = c.icl - chosen.icl
            noise = None
            if sd is not None and hi_g - lo_g == 1 and np.isfinite(sd[hi_g - 1]):
                noise = float(sd[hi_g - 1])
            if abs(diff) < CLOSE_ICL or (noise is not None and abs(diff) < CLEAR * noise):
                said = f", {abs(diff) / noise:.1f} sd of their difference" if noise else ""
                n_close += 1
                notes.append(f"G = {lo_g} and G = {hi_g} are close: G = {c.n_components} lies {diff:+.1f} from the "
                             f"chosen G = {k} in ICL{said}; G = {c.n_components}: {c.reason}")  # fmt: skip
    if chosen.width_ratio is not None and chosen.width_ratio > WIDE:
        notes.append(f"the mixture width is {chosen.width_ratio:.1f}x the rms SCS error: the columns vary beyond "
                     "their fit errors (residual thickness, alloying); a width wider than the errors is not held "
                     "against any G")  # fmt: skip
    others = [c for c in cands if c is not chosen][:3]
    if others:
        notes.append("runners-up: " + "; ".join(f"G = {c.n_components} (ICL {c.icl - icl[g_global - 1]:+.1f}, "
                                                 f"penalty {c.penalty:.2f}: {c.reason})" for c in others))  # fmt: skip
    if override is not None:
        cands = [chosen] + [c for c in cands if c is not chosen]
    return chosen, cands, notes
