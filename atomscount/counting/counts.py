"""Atom counts per column: :func:`count_atoms`, which counts by any of the three methods, and the time series.

The result type is in :mod:`.result`, library matching in :mod:`.library_match`,
the hybrid in :mod:`.hybrid` and the coupling of frames in :mod:`.series`; their
names stay importable from here.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

# with the names this module held before it was split, so that they stay importable from here
from .._checks import (  # noqa: F401
    check_choice,
    check_increasing,
    check_integer,
    check_magnitude,
    check_positive,
    check_real,
    check_real_array,
    check_rng,
)
from ..io import atomic_path, read_hdf5, write_hdf5  # noqa: F401
from ._inputs import SCS_LARGEST, _check_normalised, _clean_scs, _listing, check_scs_magnitude, round_scs  # noqa: F401
from ._scale import assign_in_chunks, bin_columns, hybrid_em, lattice_scan  # noqa: F401
from .gmm import MixtureScan, fit_mixtures
from .hybrid import SCAN_WINDOW, _hybrid_fit, count_hybrid  # noqa: F401
from .library_match import (  # noqa: F401
    _SETTINGS_CHECKED,
    FAR_OFF,
    FREE_SCALE_EVIDENCE,
    FREE_SCALE_SPREAD,
    FREE_SCALE_STRONG_EVIDENCE,
    NORMALISE_HINT,
    _check_library_counts,
    _far_off,
    _library_extent,
    _library_name,
    _library_sanity,
    _library_table,
    _ratio,
    _resolve,
    _scan_scale,
    check_library_settings,
    count_by_library,
)
from .result import _KIND, ColumnCounts  # noqa: F401
from .select import leave_out_far_below, select_components
from .series import _couple_frames

__all__ = ["ColumnCounts", "check_library_settings", "count_atoms", "count_by_library", "count_hybrid",
           "count_time_series"]  # fmt: skip


def _assign(x, ok, post_ok, count_values):
    """Counts (-1 where dropped), their probability and the full posterior, from the posterior of the kept values.

    Raises rather than return NaN probabilities: a posterior that is not finite
    means the SCS defeated the arithmetic, and no count drawn from it is worth having.
    """
    if not np.all(np.isfinite(post_ok)):
        bad = int(np.sum(~np.all(np.isfinite(post_ok), axis=1)))
        raise ValueError(f"the posterior of {bad} of {post_ok.shape[0]} columns is not finite for scs within "
                         f"{np.min(x[ok]):.3g}..{np.max(x[ok]):.3g}: the SCS (or their errors) are too far from "
                         "the scale of the model to count")  # fmt: skip
    counts = np.full(x.shape, -1, dtype=np.int64)
    prob = np.zeros(x.shape)
    post = np.zeros((x.size, len(count_values)))
    counts[ok] = np.asarray(count_values)[post_ok.argmax(axis=1)]
    prob[ok] = post_ok.max(axis=1)
    post[ok] = post_ok
    return counts, prob, post


def _limit_components(n_valid, max_components):
    g_max = check_integer(max_components, "max_components", low=1, high=150)
    if n_valid < 3 * g_max:
        new = max(1, n_valid // 3)
        warnings.warn(f"{n_valid} columns cannot support {g_max} components (need n >= 3 G): "
                      f"max_components limited to {new}", stacklevel=3)  # fmt: skip
        g_max = new
    return g_max


def _from_mixture(x, ok, scan: MixtureScan, g, comp_counts, method, cands, notes, scale, meta):
    i = g - 1
    comp_counts = np.asarray(comp_counts, dtype=np.int64)
    counts, prob, post = _assign(x, ok, scan.posterior(x[ok], g), comp_counts)
    return ColumnCounts(counts, prob, comp_counts, post, method, g, scan.means[i],
                        scan.weights[i], float(scan.width[i]), scan.icl, scan.aic, scan.bic, x, scale, None,
                        [c.to_dict() for c in cands], notes, meta)  # fmt: skip


def count_atoms(scs, *, method: str = "icl", library=None, max_components: int = 50, scs_errors=None,
                n_components: int | None = None, first_count: int | None = None, dose: float | None = None,
                n_starts: int = 6, microscope: dict | None = None, normalised: bool | None = None, mask=None,
                rng=None, progress: bool = False) -> ColumnCounts:  # fmt: skip
    """Count the atoms in every column from its SCS.

    Parameters
    ----------
    scs : array_like (n,)
        Scattering cross-sections [Å²], e.g. ``fit.scs``; finite and >= 0
        wherever counted (see ``mask``).
    method : {"icl", "library", "hybrid"}
        ``"icl"``: Gaussian mixture, G chosen among all G by its ICL, its depth
        as a minimum and its physical consistency (see :mod:`atomscount.counting.select`).
        ``"library"``: nearest library value (:func:`count_by_library`).
        ``"hybrid"``: mixture whose means are the library values up to one fitted
        scale and offset (:func:`count_hybrid`).
    library : ScsLibrary, str, path or array_like, optional
        Needed for "library" and "hybrid"; for "icl" it judges the candidates and
        maps components to counts. Any form
        :func:`~atomscount.library.resolve_library` accepts: ``"Pt:110"``, a
        library file (HDF5, or a text table of atoms and SCS such as StatSTEM's),
        an ``(m, 2)`` table, ``(n_atoms, scs)`` or SCS for 1, 2, ... atoms.
    max_components : int
        G_max for "icl" (at most 150; limited to n/3 with a warning).
    scs_errors : array_like (n,), optional
        SCS standard errors (``fit.scs_error``): judge the mixture width, weight
        the library comparison.
    n_components : int, optional
        Override the automatic choice of G.
    first_count : int, optional
        Count of the lowest component (default 1, or the library alignment's).
        Must be >= 1: a counted column holds at least one atom, and -1 marks
        the columns that were not counted.
    dose : float, optional
        Dose-dependent component widths ``sigma^2 + mean / dose`` [e/Å²].
    microscope : dict, optional
        The image's microscope settings (``fit.metadata["microscope"]``, read from
        the file where it says): a library simulated for other settings is
        flagged with a warning and a note.
    normalised : bool, optional
        For "library" and "hybrid": True declares the SCS to be on the library's
        absolute scale [Å²] (a normalised image; ``fit.normalised``), and the
        library is used at scale 1; False says they are not, and the scale is
        found by a scan over scales. None: "library" compares at scale 1,
        "hybrid" scans and keeps a scale other than 1 only where the data
        support it. See :func:`count_by_library` and :func:`count_hybrid`.
    mask : array_like (n,) of bool, optional
        Columns to count, e.g. ``fit.converged``; the others are counted -1 and
        their SCS may be NaN.
    rng : Generator, int or None
        Seeds the random EM starts.

    Returns
    -------
    ColumnCounts

    Raises
    ------
    ValueError
        For an unknown ``method``, a missing library, ``max_components`` outside
        1..150, ``n_components`` outside 1..max_components, ``first_count``
        below 1, ``n_starts`` below 2, ``dose`` not finite and > 0, a library
        whose SCS are not finite, above zero and strictly increasing, SCS that
        are empty or beyond ±1e12 (squares of larger ones overflow the fits),
        SCS to count that are NaN, inf or negative (the message gives how many
        and the first few indices and values; leave columns out with ``mask``),
        negative ``scs_errors``, or SCS far outside the library's range for
        "library" and "icl" (the message gives the ratio and how to normalise
        the image; "hybrid" fits the scale instead, see :func:`count_hybrid`).
        A single SCS gets one component.
    TypeError
        If an integer argument is not an integer (booleans, strings and floats
        are not), ``dose`` is not a real number, ``normalised`` not a bool or
        None, ``mask`` not bool, or the SCS are not real numbers.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> truth = rng.integers(1, 8, 300)
    >>> scs = 0.05 * truth + rng.normal(0, 0.005, truth.size)
    >>> result = count_atoms(scs, max_components=12, scs_errors=np.full(300, 0.005), rng=1)
    >>> result.n_components, float(np.mean(result.counts == truth))
    (7, 1.0)
    """
    check_choice(method, "method", {"icl", "library", "hybrid"})
    if method in ("library", "hybrid") and library is None:
        raise ValueError(f"method={method!r} needs a library")
    if first_count is not None:
        check_integer(first_count, "first_count", low=1,
                      why=" (a counted column holds at least one atom; -1 marks columns not counted)")  # fmt: skip
    check_integer(max_components, "max_components", low=1, high=150)
    if n_components is not None:
        check_integer(n_components, "n_components", low=1, high=max_components)
    if dose is not None:
        dose = check_positive(dose, "dose")
    n_starts = check_integer(n_starts, "n_starts", low=2)
    normalised = _check_normalised(normalised)
    rng = check_rng(rng)
    if library is not None:
        library = _resolve(library)
        _library_table(library)  # refuse a bad library before the mixtures are fitted
    mismatch = check_library_settings(library, microscope)
    for msg in mismatch:
        warnings.warn(msg, stacklevel=2)
    if method in ("library", "hybrid"):  # they check the SCS themselves
        if method == "library":
            res = count_by_library(scs, library, scs_errors=scs_errors, normalised=normalised, mask=mask)
        else:
            res = count_hybrid(scs, library, scs_errors=scs_errors, normalised=normalised, mask=mask, rng=rng)
        return dataclasses.replace(res, notes=list(res.notes) + mismatch) if mismatch else res
    x, ok, err = _clean_scs(scs, scs_errors, mask)
    g_max = _limit_components(int(ok.sum()), max_components)
    scan = fit_mixtures(x[ok], max_components=g_max, n_starts=n_starts, dose=dose, rng=rng, progress=progress)
    lib_tab = None
    if library is not None:
        _, tab0, _ = _library_table(library)
        off = _far_off(x[ok], tab0)
        if off is not None:
            raise ValueError(f"{off[1]}: the SCS are not normalised like the library, so it cannot judge the "
                             f"mixtures or give their counts. Either {NORMALISE_HINT}, count with method='hybrid', "
                             "which fits the scale, or count without the library")  # fmt: skip
        _, lib_tab, _ = _library_table(library, _library_extent(library, x[ok]) + g_max)
    chosen, cands, notes = select_components(scan, library_scs=lib_tab, scs_errors=None if err is None else err[ok],
                                             override=n_components)  # fmt: skip

    def refit(keep):  # columns far below the lowest component are left out of the mixture (counted -1)
        s = fit_mixtures(x[ok][keep], max_components=g_max, n_starts=n_starts, dose=dose, rng=rng, progress=progress)
        return s, select_components(s, library_scs=lib_tab, scs_errors=None if err is None else err[ok][keep],
                                    override=n_components)  # fmt: skip

    keep, scan, chosen, cands, notes = leave_out_far_below(x[ok], scan, chosen, cands, notes, refit=refit)
    ok[np.flatnonzero(ok)[~keep]] = False
    g = chosen.n_components
    if scan.converged is not None and not scan.converged[g - 1]:
        msg = f"EM for the chosen G = {g} stopped at its iteration limit before converging"
        warnings.warn(msg, stacklevel=2)
        notes.append(msg)
    if lib_tab is not None and first_count is None:
        comp_counts = np.array(chosen.counts)
    else:
        first = 1 if first_count is None else int(first_count)
        comp_counts = np.arange(first, first + g)
        if lib_tab is not None:
            notes.append(f"first_count = {first} set by the user (the library alignment gave {chosen.first_count})")
    meta = {"g_max": g_max, "n_starts": n_starts, "dose": dose}
    if library is not None:
        meta["library"] = _library_name(library)
    return _from_mixture(x, ok, scan, int(g), comp_counts, "icl", cands, notes + mismatch, chosen.scale, meta)


def count_time_series(scs_frames, *, library=None, max_components: int = 50, scs_errors=None,
                      n_components: int | None = None, first_count: int | None = None, stay_probability: float = 0.95,
                      mask=None, rng=None) -> ColumnCounts:  # fmt: skip
    """Count the same columns over several frames.

    One mixture is fitted to all frames together (the columns do not change
    their SCS distribution between frames, only a few change count), G is chosen
    as in :func:`count_atoms`, and each column's counts over time are the most
    probable path of a hidden Markov chain (Viterbi): a column keeps its count
    from one frame to the next with ``stay_probability``, gains or loses one atom
    with the rest split evenly, and larger jumps are 1000 times less likely than
    one-atom changes. Per-frame independent counts are kept in
    ``metadata["independent_counts"]``.

    Parameters
    ----------
    scs_frames : array_like (n_frames, n_columns)
        SCS of the same columns (same order) in each frame; finite and >= 0
        wherever counted.
    library : ScsLibrary, str, path or array_like, optional
    max_components, scs_errors, n_components, first_count, rng
        As for :func:`count_atoms` (``scs_errors`` with the shape of ``scs_frames``).
    stay_probability : float
        Probability that a column keeps its count from one frame to the next, in (0, 1).
    mask : array_like (n_frames, n_columns) of bool, optional
        False where a column was not measured in a frame (its SCS may be NaN
        there): counted -1, and that frame says nothing about the column's path.

    Returns
    -------
    ColumnCounts
        ``counts`` of shape (n_frames, n_columns).

    Raises
    ------
    ValueError
        If ``scs_frames`` is not 2D or is empty, ``stay_probability`` lies outside
        (0, 1), ``mask`` is not of the frames' shape, an SCS to count is NaN,
        inf or negative, and for the SCS and arguments as in :func:`count_atoms`.
    TypeError
        As in :func:`count_atoms`, and if ``stay_probability`` is not a real number.
    """
    y = check_real_array(scs_frames, "scs_frames")
    if y.ndim != 2:
        raise ValueError(f"scs_frames must be 2D (frames, columns), got shape {y.shape}")
    if y.size == 0:
        raise ValueError(f"scs_frames must not be empty, got shape {y.shape}")
    stay_probability = check_real(stay_probability, "stay_probability", low=0.0, high=1.0, open_low=True,
                                  open_high=True)  # fmt: skip
    if scs_errors is not None:
        scs_errors = check_real_array(scs_errors, "scs_errors")
        if scs_errors.shape != y.shape:
            raise ValueError(f"scs_errors must have the shape of scs_frames {y.shape}, got {scs_errors.shape}")
        scs_errors = scs_errors.ravel()
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != y.shape:
            raise ValueError(f"mask must have the shape of scs_frames {y.shape}, got {mask.shape}")
    try:
        flat = count_atoms(y.ravel(), method="icl", library=library, max_components=max_components,
                           scs_errors=scs_errors, n_components=n_components, first_count=first_count,
                           mask=None if mask is None else mask.ravel(), rng=rng)  # fmt: skip
    except ValueError as exc:  # name the frame and column, not the index into the flattened frames
        raise ValueError(str(exc).replace("scs[", "scs_frames.ravel()[")) from None
    return _couple_frames(flat, y, stay_probability)
