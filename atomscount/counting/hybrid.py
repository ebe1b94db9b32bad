"""The hybrid count: a mixture whose means are the library values times one fitted scale (and optionally an offset)."""

from __future__ import annotations

import numpy as np

from .._checks import check_choice, check_integer, check_positive, check_real
from ._inputs import _check_normalised, _clean_scs, round_scs
from ._scale import assign_in_chunks, bin_columns, hybrid_em
from .library_match import (
    NORMALISE_HINT,
    _far_off,
    _library_extent,
    _library_name,
    _library_table,
    _resolve,
    _scan_scale,
)
from .result import ColumnCounts

#: The hybrid EM refines the scan's scale within this relative window (see :func:`hybrid_em`).
SCAN_WINDOW = 0.03


def count_hybrid(scs, library, *, scs_errors=None, fit_offset: bool = False, normalised: bool | None = None,
                 scale_prior_sd: float | None = None, mask=None, max_iter: int = 500, tol: float = 1e-9,
                 rng=None) -> ColumnCounts:  # fmt: skip
    """Mixture counting with the library as prior knowledge.

    Component ``N`` has mean ``scale * L(N) + offset`` (``L`` the library, every
    count from 1 to just beyond the data) and a free weight that may fall to
    zero. Column ``i`` scatters about it with variance ``e_i^2 + t^2``: its own
    SCS error ``e_i`` (when given) plus one fitted spread ``t`` for everything
    the errors leave out. EM fits the weights and width, and the scale and
    offset where they are free, so a thickness that is missing from the data
    does not shift the counts.

    With ``normalised=True`` the SCS are declared to be on the library's
    absolute scale (a normalised image) and the scale is held at 1. Otherwise
    the scale is found by a scan that can reach any factor: for every scale on a
    log grid (from all columns on twice the library's largest count to the
    thinnest on half a single atom; 0.5 % steps, then 0.05 % steps about the
    best few) the library's values times the scale are the means of a mixture
    with free weights and one width, and BIC picks the scale (a finer lattice,
    every other count empty, fits no better but pays for twice the weights; a
    coarser one leaves half the columns between its values). The EM then
    refines it, starting there, without a prior (unless ``scale_prior_sd`` is
    given). A scale other than 1 is kept only where the data support it (BIC
    against the scale held at 1); with ``normalised=False`` it is always kept.
    When the scan cannot fix a scale (single counts not resolved), the SCS are
    far off the library (more than twice beyond its range) or
    ``normalised=False``, that is an error; otherwise the EM starts at 1.

    The fit runs on the SCS gathered into 4,000 bins (each with its columns'
    mean squared error) once there are more than 4,000 columns; the posteriors
    are computed for each column, in chunks. 10⁶ columns take seconds.

    Parameters
    ----------
    scs : array_like (n,)
        SCS [Å², or detector counts × Å² before normalisation]; finite and >= 0
        wherever counted.
    library : ScsLibrary, str, path or array_like
        As for :func:`count_by_library`.
    scs_errors : array_like (n,), optional
    fit_offset : bool
        Also fit an offset (off by default: for a nearly linear library it trades
        against a shift of every count by one).
    normalised : bool, optional
        True: the SCS are on the library's scale, which is held at 1. False: they
        are not, and the scale found by the scan is kept. None: scan, and keep a
        scale other than 1 where the data support it.
    scale_prior_sd : float, optional
        Standard deviation of a log-normal prior on the scale, about the scan's
        value (about 1 where the scan could not fix one). None: no prior.
    mask : array_like (n,) of bool, optional
        Columns to count; the others are counted -1 and their SCS may be NaN.
    max_iter : int
    tol : float
    rng : Generator, int or None
        Accepted for a signature like :func:`count_atoms`'s; the fit is deterministic.

    Returns
    -------
    ColumnCounts
        ``library_scale`` and ``library_offset`` give the fitted relation;
        ``metadata["free_scale"]`` whether the scale came from the scan.

    Raises
    ------
    ValueError
        If the scale must be found (``normalised=False``, or SCS far off the
        library) and no scaled library lattice fits them (one thickness only, or
        single counts not resolved); the message gives why and how to normalise
        the image. Also for SCS, ``mask`` and a library as in
        :func:`count_by_library`, ``scale_prior_sd`` not finite and > 0,
        ``max_iter`` below 1 and ``tol`` below 0.
    TypeError
        If ``max_iter`` is not an integer, ``normalised`` not a bool or None, or
        ``scale_prior_sd`` or ``tol`` not a real number.
    """
    check_choice(fit_offset, "fit_offset", {False, True})
    normalised = _check_normalised(normalised)
    if scale_prior_sd is not None:
        scale_prior_sd = check_positive(scale_prior_sd, "scale_prior_sd")
    max_iter = check_integer(max_iter, "max_iter", low=1)
    tol = check_real(tol, "tol", low=0.0)
    library = _resolve(library)
    x, ok, err = _clean_scs(scs, scs_errors, mask)
    # fitted to rounded SCS, the scale and the counts do not hinge on floating-point noise (see round_scs)
    xs = round_scs(x[ok])
    if err is not None:
        e = err[ok]
        known = np.isfinite(e) & (e > 0)
        e = np.where(known, e, np.median(e[known]) if known.any() else 0.0)
    else:
        e = np.zeros_like(xs)
    _, tab0, _ = _library_table(library)
    notes = []
    unit = 1.0
    scanned = False
    free = not normalised
    s = None
    if normalised:
        notes.append("normalised=True: the SCS are on the library's absolute scale, so the scale is held at 1")
    else:
        off = _far_off(xs, tab0)
        strict = off is not None or normalised is False
        s, how = _scan_scale(xs, library, tab0, off, strict=strict)
        if s is None:
            # nothing fixes a free scale then: a mixture with free weights fits any scale as well
            free = scale_prior_sd is not None
            notes.append(f"the scan over library scales could not fix one ({how}): the scale is "
                         + ("fitted about 1 with the prior given" if free else "held at 1"))  # fmt: skip
        else:
            # the EM refines the scan's scale in its units; a scale within 10 % of 1 is not reported as found
            unit, scanned = s, strict or abs(np.log(s)) > 0.1
        if scanned:
            why = (f"{off[1]}: the SCS are not normalised like the library, so" if off is not None else
                   "the SCS were not declared normalised, so")  # fmt: skip
            notes.append(f"{why} the library scale was found by a scan: {how}; the hybrid EM refined it. To "
                         f"compare with the library directly, {NORMALISE_HINT}")  # fmt: skip
    # in units of the scan's scale, the EM (and any prior) starts about 1; the scale held at 1 is 1 / unit there
    anchor = None if normalised is False else 1.0 / unit
    best = _hybrid_fit(xs / unit, e / unit, err is not None, library, fit_offset, scale_prior_sd, max_iter, tol,
                       free=free, anchor=anchor, window=SCAN_WINDOW if s is not None else None)  # fmt: skip
    n, tab = best["n"], best["tab"]
    scale, offset, extra = best["scale"] * unit, best["offset"] * unit, best["extra"] * unit
    weights = best["weights"]
    sd = float(np.sqrt(np.median(e) ** 2 + extra**2))
    mu = scale * tab + offset
    logw = np.log(np.maximum(weights, 1e-300))
    e_all = np.zeros(x.shape)
    e_all[ok] = e
    x_round = np.zeros(x.shape)
    x_round[ok] = xs

    def log_prob(idx):
        var = (e_all[idx] ** 2 + extra**2)[:, None] / unit**2
        return logw - 0.5 * ((x_round[idx, None] - mu) / unit) ** 2 / var - 0.5 * np.log(var)

    counts, prob, post = assign_in_chunks(x, ok, n, log_prob)
    notes.insert(0, f"library scale {scale:.5g}, offset {offset:.4g} Å², spread beyond the SCS errors {extra:.3g} Å²")
    if free and not best["scale_supported"]:
        notes.append("a library scale other than 1 is not supported by the data (BIC): scale held at 1")
    if free and not scanned and best["scale_supported"] and abs(scale - 1) > 0.1:
        notes.append(f"the fitted library scale {scale:.3f} is far from 1: check the image normalisation")
    used = weights * xs.size >= 0.5
    loglik = float(best["ll"]) - xs.size * np.log(unit)  # of the SCS in their own units
    return ColumnCounts(counts, prob, n, post, "hybrid", int(used.sum()), scale * tab[used] + offset, weights[used],
                        float(sd), np.zeros(0), np.zeros(0), np.zeros(0), x, float(scale), float(offset), [], notes,
                        {"library": _library_name(library), "log_likelihood": loglik, "free_scale": scanned,
                         "normalised": normalised})  # fmt: skip


def _hybrid_fit(xs, e, have_errors, library, fit_offset, prior_sd, max_iter, tol, *, free, anchor, window,
                burn_in=30):  # fmt: skip
    """The hybrid fit of ``xs`` against the library at scales about 1 (see :func:`count_hybrid`).

    ``free``: fit the scale (else hold it at ``anchor``). ``anchor``: with a free
    scale, the scale it must beat by BIC to be kept (None: always kept).
    ``window``: keep the scale within 1 ± window (the scan found it), else start
    it on a grid over 0.8..1.25.
    """
    top = _library_extent(library, xs / 0.7)
    n, tab, _ = _library_table(library, top)
    inc = np.diff(np.concatenate([[0.0], tab]))
    width0 = (0.1 if have_errors else 0.25) * float(np.median(inc))
    xb, wb, e2b = bin_columns(xs, e)
    min_var = (1e-9 * width0) ** 2  # without SCS errors, the spread must not collapse to zero

    def fixed_at(s):
        return hybrid_em(xb, wb, e2b, tab, s, 0.0, (width0 * s) ** 2, False, False, None, max_iter, tol, min_var)

    if not free:
        ll, scale, offset, extra, weights = fixed_at(anchor)
        return {"ll": ll, "scale": scale, "offset": offset, "extra": extra, "weights": weights, "n": n, "tab": tab,
                "scale_supported": False}  # fmt: skip
    # start the scale on a grid, a few EM steps each; the best start runs to convergence
    bounds = None if window is None else (1 - window, 1 + window)
    starts = np.linspace(0.8, 1.25, 10) if window is None else np.linspace(1 - window / 2, 1 + window / 2, 5)
    burned = [hybrid_em(xb, wb, e2b, tab, s0, 0.0, (width0 * s0) ** 2, True, fit_offset, prior_sd, burn_in, tol,
                        min_var, bounds=bounds) for s0 in starts]  # fmt: skip
    ll, scale, offset, extra, weights = max(burned, key=lambda r: r[0])
    best = hybrid_em(xb, wb, e2b, tab, scale, offset, max(extra, 1e-3 * width0) ** 2, True, fit_offset, prior_sd,
                     max_iter, tol, min_var, weights=weights, bounds=bounds)  # fmt: skip
    supported = True
    chosen = best
    if anchor is not None:
        # Is a scale other than the anchor supported by the data? Compare with the scale held there (BIC).
        fixed = fixed_at(anchor)
        ll_free = best[0] + (0.0 if prior_sd is None else 0.5 * (np.log(best[1]) / prior_sd) ** 2)
        n_free = 2 if fit_offset else 1
        supported = bool(2 * (ll_free - fixed[0]) > n_free * np.log(xs.size))
        chosen = best if supported else fixed
    ll, scale, offset, extra, weights = chosen
    return {"ll": ll, "scale": scale, "offset": offset, "extra": extra, "weights": weights, "n": n, "tab": tab,
            "scale_supported": supported}  # fmt: skip
