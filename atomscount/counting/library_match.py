"""Counting by comparison with a simulated library, the library's table of SCS, and the scan for its scale."""

from __future__ import annotations

import warnings

import numpy as np

from .._checks import check_increasing, check_integer, check_real, check_real_array
from ._inputs import _check_normalised, _clean_scs, check_scs_magnitude, round_scs
from ._scale import assign_in_chunks, lattice_scan
from .result import ColumnCounts


def _check_library_counts(library) -> None:
    """An ScsLibrary's atom counts: whole, >= 1, each listed once and increasing (it may be built in memory)."""
    n = np.asarray(library.n_atoms, dtype=np.float64)
    if n.ndim != 1 or n.size != np.size(library.scs):
        raise ValueError(f"library.n_atoms must be 1D with one count per SCS, got shape {n.shape}")
    bad = np.flatnonzero(~np.isfinite(n) | (n < 1) | (n != np.round(n)))
    if bad.size:
        raise ValueError(f"library.n_atoms must be whole numbers >= 1, got library.n_atoms[{bad[0]}] = {n[bad[0]]:g}")
    same = np.flatnonzero(np.diff(n) == 0)
    if same.size:
        i = int(same[0])
        raise ValueError(f"library.n_atoms lists {n[i]:g} atoms twice (library.n_atoms[{i}] and [{i + 1}]); "
                         "each count must appear once")  # fmt: skip
    down = np.flatnonzero(np.diff(n) < 0)
    if down.size:
        i = int(down[0]) + 1
        raise ValueError(f"library.n_atoms must increase strictly, got library.n_atoms[{i}] = {n[i]:g} after "
                         f"{n[i - 1]:g}")  # fmt: skip


def _library_table(library, n_max=None):
    """(counts, SCS, s.e.) of a library, as arrays; extrapolated up to ``n_max`` if asked.

    The library may be given in any form :func:`~atomscount.library.resolve_library`
    accepts. The SCS must be finite, above zero, strictly increasing and within the
    range allowed for SCS (see :data:`SCS_LARGEST`), also where the thickness curve
    extends them.
    """
    from ..library import ScsLibrary, resolve_library

    library = resolve_library(library)
    if isinstance(library, ScsLibrary):
        _check_library_counts(library)
        check_increasing(library.scs, "library.scs", positive=True)
        check_scs_magnitude(library.scs, "library.scs")
        sem = np.asarray(library.scs_sem, dtype=np.float64)
        if not np.all(np.isfinite(sem) & (sem >= 0)):
            i = int(np.flatnonzero(~(np.isfinite(sem) & (sem >= 0)))[0])
            raise ValueError(f"library.scs_sem must be finite and >= 0, got library.scs_sem[{i}] = {sem[i]}")
        top = library.max_atoms if n_max is None else max(int(n_max), 1)
        n = np.arange(1, top + 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scs = library.scs_at(n, extrapolate=True)
        if top > library.max_atoms:
            try:
                check_increasing(scs, "library.scs", positive=True)
                check_scs_magnitude(scs, "library.scs")
            except ValueError as exc:
                raise ValueError(f"{exc} once extended beyond {library.max_atoms} atoms by the library's "
                                 f"thickness curve {library.curve}: the curve cannot extrapolate this "
                                 "library") from exc  # fmt: skip
        return n, scs, np.interp(n, library.n_atoms, sem)
    arr = check_increasing(check_real_array(library, "library"), "library", positive=True)
    check_scs_magnitude(arr, "library")
    n = np.arange(1, arr.size + 1)
    return n, arr, np.zeros_like(arr)


def _ratio(r: float) -> str:
    """A ratio for a message: with thousands separators while short, else in three significant digits."""
    return f"{r:,.0f}" if r < 1e6 else f"{r:.3g}"


def _library_extent(library, scs):
    """Counts needed to cover the measured SCS (at least the library's own range)."""
    n, tab, _ = _library_table(library)
    top = float(np.nanmax(scs))
    extra = 0
    if top > tab[-1]:
        inc = tab[-1] - tab[-2] if len(tab) > 1 else tab[-1]
        extra = int(np.ceil((top - tab[-1]) / max(inc, 1e-12))) + 2
    # extrapolating far beyond the simulations means nothing: stop at twice the library
    if extra > len(n):
        warnings.warn(f"SCS up to {top:.4g} Å² lie far beyond the library (largest {tab[-1]:.4g} Å² at "
                      f"{len(n)} atoms): counts are capped at {2 * len(n)}; check for spurious columns",
                      stacklevel=3)  # fmt: skip
        extra = len(n)
    return len(n) + extra


FAR_OFF = 2.0  # the median SCS this many times beyond the library's range: the SCS are not normalised
# A free scale needs resolved counts: noisy data fit a coarser lattice about as well as the true one,
# at 0.34-0.52 steps of spread (on synthetic particles; right scales came with 0.04-0.30 steps), and a
# lattice of the counts must fit better than one of the midpoints between them (2 dlogL 48-2200 for
# right scales, 2-35 for wrong ones at up to 1,000 columns)
FREE_SCALE_SPREAD = 0.32
FREE_SCALE_EVIDENCE = 25.0
# ... unless the counts beat the midpoints by far more than any wrong scale did: an Au rod of 1,248 columns at
# 0.4 steps of noise (synthetic, 10⁴ times the library) gives the right scale at a spread of 0.41 and an evidence
# of 115; wrong scales at 0.3-0.5 steps of noise came with 0.36-0.64 and at most 29 (300-4,000 columns)
FREE_SCALE_STRONG_EVIDENCE = 100.0

NORMALISE_HINT = ("normalise the image to the incident beam with HAADFImage.normalise(detector_vacuum=..., "
                  "detector_black=...) (the detector's readings under the full beam and blanked), then fit "
                  "and count again")  # fmt: skip


def _far_off(xs, tab):
    """Ratio of the median SCS to the library's range when it lies more than FAR_OFF beyond it, else None.

    Returns (ratio, statement): the ratio to the library's largest SCS (above)
    or to its single-atom SCS (below).
    """
    med = float(np.median(xs))
    if med > FAR_OFF * tab[-1]:
        ratio = med / tab[-1]
        return ratio, (f"the median SCS {med:.4g} Å² is {_ratio(ratio)} times the library's largest SCS "
                       f"({tab[-1]:.4g} Å² at {len(tab)} atoms)")  # fmt: skip
    if med < tab[0] / FAR_OFF:
        ratio = med / tab[0]
        return ratio, (f"the median SCS {med:.4g} Å² is {ratio:.3g} times the library's single-atom SCS "
                       f"({tab[0]:.4g} Å²)")  # fmt: skip
    return None


def _library_sanity(x, tab, err_sd):
    """Warnings when the measured SCS do not sit on the library's lattice of values."""
    notes = []
    inc = np.diff(np.concatenate([[0.0], tab]))
    if np.mean(x < 0.5 * tab[0]) > 0.05:
        low = float(np.mean(x < 0.5 * tab[0]))
        notes.append(f"{low:.0%} of the SCS lie below half the library's single-atom SCS ({tab[0]:.4g} Å²): "
                     "check the image normalisation (detector vacuum and black levels)")  # fmt: skip
    if np.mean(x > tab[-1] + inc[-1]) > 0.01:
        notes.append(f"{np.mean(x > tab[-1] + inc[-1]):.0%} of the SCS lie above the library's largest value "
                     f"({tab[-1]:.4g} Å² at {len(tab)} atoms): counts there are extrapolated")  # fmt: skip
    # every k-th column judges the scale as well as all of them: 10⁵ at most
    step = max(1, x.size // 100_000)
    xj = x[::step]

    def misfit(scale):
        y = xj / scale
        k = np.clip(np.searchsorted(tab, y), 1, len(tab) - 1)
        d = np.minimum(np.abs(y - tab[k - 1]), np.abs(y - tab[k]))
        return float(np.mean((d / inc[k]) ** 2))

    scales = np.linspace(0.6, 1.6, 101)
    mis = np.array([misfit(s) for s in scales])
    s_best = scales[np.argmin(mis)]
    at_one = misfit(1.0)
    if abs(s_best - 1) > 0.08 and mis.min() < 0.5 * at_one and np.median(err_sd) < 0.3 * np.median(inc):
        notes.append(f"the SCS are about {s_best:.3f} times the library values (misfit {mis.min():.3f} "
                     f"vs {at_one:.3f} unscaled): the normalisation may differ from the library's; "
                     "consider method='hybrid', or normalised=False to fit the scale")  # fmt: skip
    return notes


def _scan_scale(xs, library, tab0, off, *, strict: bool):
    """(scale, statement) of the library lattice that explains the SCS best (see :func:`lattice_scan`).

    When the best lattice is no better than one Gaussian, its columns spread more
    than FREE_SCALE_SPREAD steps about it, or it beats the lattice of midpoints by
    less than FREE_SCALE_EVIDENCE, the scale is not fixed by the data: with
    ``strict`` a ValueError says why (and how to normalise), else (None, why).
    """
    from ..library import ScsLibrary

    if np.unique(xs).size < 3:
        why = f"a free library scale needs at least 3 distinct SCS values, got {np.unique(xs).size}"
        if strict:
            raise ValueError(f"scs: {why}")
        return None, why
    n_top = 2 * len(tab0) if isinstance(library, ScsLibrary) else len(tab0)
    _, tab, _ = _library_table(library, n_top)
    r = lattice_scan(xs, tab)
    s = r["scale"]
    start = (f"{off[1]}: the SCS are not normalised like the library, and" if off is not None else
             "the SCS were not declared normalised (on the library's scale), and")  # fmt: skip
    hopeless = start + " no scale can be fitted from them ({why}). To count against the library, " + NORMALISE_HINT
    why = None
    if not r["bic"] < r["one"] - 10:
        why = "no scaled library lattice fits them better than one Gaussian"
    else:
        weak = []
        if r["spread"] > FREE_SCALE_SPREAD and r["evidence"] < FREE_SCALE_STRONG_EVIDENCE:
            weak.append(f"the columns spread {r['spread']:.2f} single-atom steps about the library's values (more "
                        f"than {FREE_SCALE_SPREAD:g})")  # fmt: skip
        if r["evidence"] < FREE_SCALE_EVIDENCE:
            weak.append(f"the counts fit them better than the midpoints between counts by only {r['evidence']:.0f} "
                        "(twice the log-likelihood)")  # fmt: skip
        if weak:
            why = (f"at the best scale, {s:.5g}, {' and '.join(weak)}: single counts are not resolved well enough "
                   "to fix the scale")  # fmt: skip
    if why is not None:
        if strict:
            raise ValueError(hopeless.format(why=why))
        return None, why
    wide = ""
    if r["spread"] > FREE_SCALE_SPREAD:
        wide = (f" (more than {FREE_SCALE_SPREAD:g}, accepted for the evidence of at least "
                f"{FREE_SCALE_STRONG_EVIDENCE:g}: expect counts off by one)")  # fmt: skip
    return s, (f"the library's values times {s:.5g} fit the SCS best (BIC over {r['n_scales']} scales "
               f"{r['range'][0]:.4g}..{r['range'][1]:.4g}, coarse to fine; spread {r['spread']:.2f} single-atom "
               f"steps{wide}; better than the midpoints between counts by {r['evidence']:.0f} in twice the "
               "log-likelihood)")  # fmt: skip


def count_by_library(scs, library, *, scs_errors=None, max_count=None, normalised: bool | None = None,
                     mask=None) -> ColumnCounts:  # fmt: skip
    """Count atoms by comparison with a simulated library.

    Each column gets the count whose library SCS is most probable given the
    column's SCS error and the library's own uncertainty (Gaussian likelihood,
    flat prior over counts); with equal errors that is the nearest library value.

    Parameters
    ----------
    scs : array_like (n,)
        SCS [Å²]; finite and >= 0 wherever counted.
    library : ScsLibrary, str, path or array_like
        A library; ``"ELEMENT:AXIS"`` for a shipped one; a library file (HDF5,
        or a text table of atoms and SCS such as StatSTEM's); an ``(m, 2)``
        table of (atoms, SCS); a pair ``(n_atoms, scs)``; or SCS values for 1,
        2, ... atoms (see :func:`~atomscount.library.resolve_library`).
    scs_errors : array_like (n,), optional
        Standard errors of the SCS. Without them one width is estimated from the
        residuals about the nearest library values.
    max_count : int, optional
        Largest count considered; beyond the library it is extrapolated with the
        library's thickness curve. By default just enough to cover the data.
    normalised : bool, optional
        True: the SCS are on the library's absolute scale [Å²] (a normalised
        image), and are compared with it as they are. False: they are not
        (detector counts, or an unknown normalisation), and the library's scale
        is found first by a scan over scales (see :func:`count_hybrid`) and
        reported as ``library_scale``. None (default): as True, with a warning
        when the SCS look rescaled.
    mask : array_like (n,) of bool, optional
        Columns to count; the others (e.g. ``~fit.converged``) are counted -1 and
        their SCS may be NaN.

    Raises
    ------
    ValueError
        If an SCS to count is NaN, inf or negative (the message gives how many,
        and the first few indices and values). If most SCS lie more than twice
        beyond the library's largest value and ``normalised`` is not False: the
        image was not normalised to the incident beam (the message gives the
        ratio and how to normalise). A few SCS far beyond only warn (spurious
        columns); their counts are capped at twice the library's range. With
        ``normalised=False``, if no scale can be fixed from the SCS (the
        message says why). Also for SCS that are empty or beyond ±1e12 (see
        :data:`atomscount.counting._inputs.SCS_LARGEST`), a ``mask`` that is
        not of the SCS's shape or counts nothing, negative ``scs_errors``,
        ``max_count`` below 1, and a library whose counts are repeated or not
        increasing, or whose SCS are not finite, above zero and strictly
        increasing.
    TypeError
        If ``max_count`` is not an integer, ``normalised`` not a bool or None,
        ``mask`` not bool, or the SCS or the library are not real numbers.
    """
    normalised = _check_normalised(normalised)
    library = _resolve(library)
    x, ok, err = _clean_scs(scs, scs_errors, mask)
    if max_count is not None:
        max_count = check_integer(max_count, "max_count", low=1)
    _, tab0, _ = _library_table(library)
    notes = []
    scale = 1.0
    if normalised is False:
        scale, how = _scan_scale(round_scs(x[ok]), library, tab0, None, strict=True)
        n_all, tab_all, _ = _library_table(library, _library_extent(library, x[ok] / scale / 0.9))
        for _ in range(5):  # refine: least squares of the SCS on their nearest scaled library values
            k = np.searchsorted((tab_all[1:] + tab_all[:-1]) / 2, x[ok] / scale)
            scale = float(np.sum(x[ok] * tab_all[k]) / np.sum(tab_all[k] ** 2))
        notes.append(f"normalised=False: the library scale was found by a scan: {how}; refined to {scale:.5g} by "
                     "least squares on the nearest counts")  # fmt: skip
    else:
        off = _far_off(x[ok], tab0)
        if off is not None and off[0] > 1:
            raise ValueError(f"{off[1]}: the SCS are not normalised like the library, and counting them against it "
                             f"would cap every count. Either {NORMALISE_HINT}, or count with method='hybrid' or "
                             "normalised=False, which fit the scale")  # fmt: skip
    xs = x / scale
    top = max_count or _library_extent(library, xs[ok])
    n, tab, sem = _library_table(library, top)
    if err is None:
        # nearest library values by their midpoints: no (columns, counts) array
        k = np.clip(np.searchsorted((tab[1:] + tab[:-1]) / 2, xs[ok]), 0, len(tab) - 1)
        resid = xs[ok] - tab[k]
        sd = 1.4826 * np.median(np.abs(resid - np.median(resid)))
        sd = max(sd, 1e-3 * np.median(np.diff(np.concatenate([[0], tab]))))
        err_sd = np.full(x.shape, sd)
        estimated = True
    else:
        known = np.isfinite(err) & (err > 0)
        if not known[ok].any():
            raise ValueError("scs_errors must hold at least one finite value > 0 among the SCS counted, got none "
                             "(leave scs_errors out to estimate one spread from the data)")  # fmt: skip
        err_sd = np.where(known, err, np.median(err[known])) / scale
        estimated = False

    sem2 = sem[None, :] ** 2

    def log_prob(idx):
        var = err_sd[idx, None] ** 2 + sem2
        return -0.5 * (xs[idx, None] - tab[None, :]) ** 2 / var - 0.5 * np.log(var)

    counts, prob, post = assign_in_chunks(x, ok, n, log_prob)
    if normalised is None:
        notes = _library_sanity(xs[ok], tab, err_sd[ok])
        for note in notes:
            warnings.warn(note, stacklevel=2)
    elif normalised:
        notes.append("normalised=True: the SCS are on the library's absolute scale (scale 1)")
    if estimated:
        notes.append(f"no scs_errors given: one SCS spread of {scale * err_sd[0]:.4g} Å² estimated from the residuals")
    used, n_used = np.unique(counts[ok], return_counts=True)
    return ColumnCounts(counts, prob, n, post, "library", int(len(used)), scale * tab[used - 1], n_used / ok.sum(),
                        float(scale * np.median(err_sd)), np.zeros(0), np.zeros(0), np.zeros(0), x, float(scale), 0.0,
                        [], notes, {"library": _library_name(library), "normalised": normalised,
                                    "free_scale": normalised is False})  # fmt: skip


def _resolve(library):
    from ..library import resolve_library

    return resolve_library(library)


_SETTINGS_CHECKED = ("energy_ev", "semiangle_mrad", "inner_angle_mrad", "outer_angle_mrad")


def check_library_settings(library, microscope) -> list[str]:
    """Differences between a library's microscope settings and an image's, as messages.

    ``microscope`` is a dict with any of ``energy_ev``, ``semiangle_mrad``,
    ``inner_angle_mrad`` and ``outer_angle_mrad`` (as read from the image file's
    metadata, see :func:`atomscount.read_image`). Settings that differ by more
    than 2 % are reported; missing ones are not.
    """
    from ..library import ScsLibrary

    if not isinstance(library, ScsLibrary) or not microscope:
        return []
    if not isinstance(microscope, dict):
        raise TypeError(f"microscope must be a dict of settings, got {type(microscope).__name__}")
    out = []
    for key in _SETTINGS_CHECKED:
        a, b = library.settings.get(key), microscope.get(key)
        if a is None or b is None:
            continue
        b = check_real(b, f"microscope[{key!r}]")
        if abs(float(a) - float(b)) > 0.02 * max(abs(float(a)), 1e-12):
            out.append(f"library {key} = {float(a):g} but the image has {float(b):g}: "
                       "the library was simulated for other microscope settings")  # fmt: skip
    return out


def _library_name(library):
    from ..library import ScsLibrary

    if isinstance(library, ScsLibrary):
        return {"element": library.element, "zone_axis": library.zone_axis, "max_atoms": library.max_atoms}
    return {"values": len(np.asarray(library))}
