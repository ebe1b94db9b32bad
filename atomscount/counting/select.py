"""Choosing the number of mixture components: ICL local minima scored on physical consistency.

On real particles the global ICL minimum is often at G = 1-3, while experts pick
a local minimum several components higher, the one where neighbouring components
differ by one atom. This module automates that judgement. Every local minimum of
the ICL curve is a candidate, and each gets a penalty (0 is perfect):

``spacing``
    With a library, each component mean is mapped to the nearest library count
    after one fitted scale (counts absent from the data are allowed, see
    :func:`align_to_library`), and the penalty is the rms distance of the means
    from their library values in single-atom increments: merged components sit
    half-way between counts. Without a library the increments between
    neighbouring means must follow a smooth power law in the mean; the penalty
    is their median absolute log-ratio to it.
``scale`` (library only)
    The fitted scale between the component means and the library must be close
    to 1 (within 15 % costs nothing): a mixture whose components are two atoms
    apart also lines up with the library, but only at a scale near 2^p.
``width``
    The shared width must agree with the columns' SCS errors: merged components
    are too wide, split ones too narrow. Column-to-column variation beyond the
    noise is allowed for: 0.8 to 1.6 times the rms error costs nothing.
``empty`` / ``duplicate``
    A component holding less than half a column costs 1. Two components on the
    same library count cost 0.1: a heavily populated count split in two still
    gives every column its right count. Without a library, two means closer than
    40 % of the expected increment cost 1, since they shift every count above.

The candidate with the smallest total penalty is chosen; within 0.05 of it, the
lower ICL wins.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .gmm import MixtureScan, local_minima

__all__ = ["Candidate", "align_to_library", "select_components"]

CLOSE_ICL = 10.0  # ICL units (twice log-likelihood): "very strong" evidence on Kass & Raftery's scale


@dataclasses.dataclass(frozen=True)
class Candidate:
    n_components: int
    icl: float
    penalty: float
    spacing: float
    scale: float | None
    width_ratio: float | None
    empty: int
    duplicate: int
    first_count: int
    counts: tuple
    reason: str

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
    """
    means = np.asarray(means, dtype=float)
    w = np.asarray(weights, dtype=float) + 1e-12
    lib = np.asarray(library_scs, dtype=float)
    inc = np.diff(np.concatenate([[0.0], lib]))
    grid = np.linspace(0.8, 1.25, 91) if scales is None else np.asarray(scales, dtype=float)

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


def select_components(scan: MixtureScan, *, library_scs=None, scs_errors=None, n_columns=None,
                      override: int | None = None):  # fmt: skip
    """Choose G from the ICL local minima of ``scan``; see the module docstring.

    Parameters
    ----------
    scan : MixtureScan
    library_scs : array_like, optional
        Library SCS for 1, 2, ... atoms (extended by the thickness curve if needed).
    scs_errors : array_like, optional
        Standard errors of the columns' SCS.
    n_columns : int, optional
        Number of columns (for the empty-component test); ``scan.n`` by default.
    override : int, optional
        Use this G; the candidates are still scored and returned.

    Returns
    -------
    chosen : Candidate
    candidates : list of Candidate, best first
    notes : list of str
        Plain statements about the ICL curve (flat, several close minima) and the choice.
    """
    icl = scan.icl
    n_cols = n_columns or scan.n
    idx = list(local_minima(icl))
    if override is not None:
        if not 1 <= override <= len(icl):
            raise ValueError(f"n_components must be within 1..{len(icl)}, got {override}")
        if override - 1 not in idx:
            idx.append(override - 1)
    err_rms = None
    if scs_errors is not None:
        e = np.asarray(scs_errors, dtype=float)
        e = e[np.isfinite(e) & (e > 0)]
        err_rms = float(np.sqrt(np.mean(e**2))) if e.size else None
    lib = None if library_scs is None else np.asarray(library_scs, dtype=float)
    cands = []
    for i in idx:
        g = int(i) + 1
        means, weights, width = scan.means[i], scan.weights[i], float(scan.width[i])
        reasons = []
        scale = None
        comp_counts = np.arange(1, g + 1)
        if lib is not None:
            comp_counts, scale, spacing = align_to_library(means, weights, lib)
            dup = int(np.sum(np.diff(comp_counts) == 0))
            scale_pen = max(0.0, abs(np.log(scale)) - np.log(1.15)) * 4
            gaps = int(comp_counts[-1] - comp_counts[0] + 1 - len(np.unique(comp_counts)))
            reasons.append(f"aligned with library counts {comp_counts[0]}..{comp_counts[-1]}"
                           + (f" ({gaps} absent)" if gaps else "") + f" at scale {scale:.3f}")  # fmt: skip
        else:
            spacing, expected = _smooth_increment_penalty(means)
            expected = np.atleast_1d(expected) if g >= 2 else np.array([np.inf])
            scale_pen = 0.0
            if g < 4:
                reasons.append("too few components to judge the spacing")
            dup = int(np.sum(np.diff(means) < 0.4 * np.asarray(expected))) if g >= 2 else 0
        empty = int(np.sum(weights * n_cols < 0.5))
        width_ratio = None
        width_pen = 0.0
        if err_rms:
            width_ratio = width / err_rms
            width_pen = max(0.0, np.log(0.8 / width_ratio)) + max(0.0, np.log(width_ratio / 1.6))
            if width_pen > 0:
                reasons.append(f"width {width_ratio:.2f}x the rms SCS error")
        if spacing > 0.15:
            reasons.append(f"means off the library by {spacing:.2f} increments (rms)" if lib is not None
                           else f"irregular spacing (median |log ratio| {spacing:.2f})")  # fmt: skip
        if dup:
            reasons.append(f"{dup} duplicated component(s)")
        if empty:
            reasons.append(f"{empty} empty component(s)")
        # with a library, two components on one count only split a heavily populated count (every
        # column still gets the right count); without one they shift every count above them
        penalty = spacing + scale_pen + width_pen + empty + (0.1 * dup if lib is not None else dup)
        if penalty < 0.05:
            reasons.append("physically consistent")
        cands.append(Candidate(g, float(icl[i]), float(penalty), float(spacing), scale, width_ratio, empty, dup,
                               int(comp_counts[0]), tuple(int(c) for c in comp_counts),
                               "; ".join(reasons)))  # fmt: skip
    best_pen = min(c.penalty for c in cands)
    ranked = sorted(cands, key=lambda c: (c.penalty > best_pen + 0.05, c.penalty if c.penalty > best_pen + 0.05
                                          else 0.0, c.icl))  # fmt: skip
    notes = []
    g_global = int(np.argmin(icl)) + 1
    span = float(np.max(icl) - np.min(icl))
    if span < CLOSE_ICL:
        notes.append(f"the ICL curve is flat (range {span:.1f} over G = 1..{len(icl)}): the data do not pick G")
    close = [c.n_components for c in cands if c.icl - icl[g_global - 1] < CLOSE_ICL]
    if len(close) > 1:
        notes.append(f"several local minima within {CLOSE_ICL:g} of the global one: G = {close}")
    if lib is None and err_rms is None:
        notes.append("no library and no SCS errors: only the spacing of the means can be judged")
    if override is not None:
        chosen = next(c for c in cands if c.n_components == override)
        notes.append(f"G = {override} set by the user")
    else:
        chosen = ranked[0]
        if chosen.n_components != g_global:
            notes.append(f"chose the local minimum G = {chosen.n_components} over the global ICL minimum "
                         f"G = {g_global}: {chosen.reason}")  # fmt: skip
        else:
            notes.append(f"chose the global ICL minimum G = {g_global}: {chosen.reason}")
    return chosen, ranked, notes
