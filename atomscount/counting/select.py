"""Choosing the number of mixture components: ICL local minima scored on physical consistency.

On real particles the global ICL minimum is often at G = 1-3, while experts pick
a local minimum several components higher, the one where neighbouring components
differ by one atom. This module automates that judgement. Every local minimum of
the ICL curve is a candidate, and each gets a penalty (0 is perfect):

``spacing``
    The increments between neighbouring component means must follow a smooth
    single-atom increment curve. With a library they are compared with the
    library's increments at the aligned counts (after one fitted scale); without
    one, with a power law fitted to the increments themselves. The penalty is
    the median absolute log-ratio.
``scale`` (library only)
    The fitted scale between the component means and the library must be close
    to 1: a mixture whose components are two atoms apart also lines up with the
    library, but only at a scale near 2^p.
``width``
    The shared width must agree with the columns' SCS errors: merged components
    are too wide, split ones too narrow. Column-to-column variation beyond the
    noise is allowed for: 0.8 to 1.6 times the rms error costs nothing.
``empty`` / ``duplicate``
    A component holding less than half a column, or two means closer than 40 %
    of the expected increment, costs 1 each.

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
    reason: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def align_to_library(means, weights, library_scs, *, fit_scale=True):
    """Best alignment of sorted component means with a library curve.

    ``library_scs[k]`` is the SCS of ``k + 1`` atoms. Tries every first count
    and, for each, the least-squares scale ``s`` (weighted by component weights)
    of ``means ~ s * library``. Returns (first_count, scale, rms misfit).
    """
    means = np.asarray(means, dtype=float)
    w = np.asarray(weights, dtype=float) + 1e-12
    lib = np.asarray(library_scs, dtype=float)
    g = len(means)
    if len(lib) < g:
        raise ValueError(f"library_scs must cover at least {g} counts, got {len(lib)}")
    best, best_key = (1, 1.0, np.inf), np.inf
    for n0 in range(len(lib) - g + 1):
        ref = lib[n0 : n0 + g]
        s = float(np.sum(w * means * ref) / np.sum(w * ref * ref)) if fit_scale else 1.0
        s = max(s, 1e-9)
        mis = float(np.sqrt(np.sum(w * (means - s * ref) ** 2) / np.sum(w)))
        inc = s * (np.mean(np.diff(ref)) if g > 1 else ref[0])
        # misfit in units of the increment, plus a preference for scales near 1
        key = mis / inc + abs(np.log(s))
        if key < best_key:
            best, best_key = (n0 + 1, s, mis), key
    return best


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
        g = i + 1
        means, weights, width = scan.means[i], scan.weights[i], float(scan.width[i])
        reasons = []
        scale = None
        first = 1
        if lib is not None and g >= 1:
            first, scale, _ = align_to_library(means, weights, lib)
            ref = lib[first - 1 : first - 1 + g]
            if g >= 2:
                ratio = np.diff(means) / (scale * np.diff(ref))
                spacing = float(np.median(np.abs(np.log(np.maximum(ratio, 1e-6)))))
            else:
                spacing = 0.0
            expected = scale * np.diff(ref) if g >= 2 else np.array([np.inf])
            scale_pen = max(0.0, abs(np.log(scale)) - np.log(1.15)) * 4
            reasons.append(f"aligned with library counts {first}..{first + g - 1} at scale {scale:.3f}")
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
            reasons.append(f"irregular spacing (median |log ratio| {spacing:.2f})")
        if dup:
            reasons.append(f"{dup} duplicated component(s)")
        if empty:
            reasons.append(f"{empty} empty component(s)")
        penalty = spacing + scale_pen + width_pen + empty + dup
        if penalty < 0.05:
            reasons.append("physically consistent")
        cands.append(Candidate(g, float(icl[i]), float(penalty), float(spacing), scale, width_ratio, empty, dup, first,
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
