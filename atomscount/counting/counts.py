"""Atom counts per column: the result type and the three counting methods."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from .._checks import (
    check_choice,
    check_increasing,
    check_integer,
    check_magnitude,
    check_positive,
    check_real,
    check_real_array,
    check_rng,
)
from ..io import atomic_path, read_hdf5, write_hdf5
from ._inputs import SCS_LARGEST, check_scs_magnitude, round_scs
from ._scale import assign_in_chunks, bin_columns, hybrid_em, lattice_scan
from .gmm import MixtureScan, fit_mixtures
from .select import leave_out_far_below, select_components

__all__ = ["ColumnCounts", "check_library_settings", "count_atoms", "count_by_library", "count_hybrid",
           "count_time_series"]  # fmt: skip

_KIND = "ColumnCounts"


@dataclasses.dataclass(frozen=True, repr=False)
class ColumnCounts:
    """Number of atoms in every column, with how sure each count is.

    Attributes
    ----------
    counts : ndarray (n,) or (n_frames, n) of int
        Atoms per column; -1 where the SCS was not finite (dropped) or, for "icl",
        lay far below the lowest mixture component (left out, see the notes).
    probability : ndarray, like ``counts``
        Posterior probability of the reported count.
    count_values : ndarray (k,)
        The counts the posterior columns refer to.
    posterior : ndarray (n, k) or (n_frames, n, k)
        Posterior probability of each count in ``count_values``.
    method : str
        "icl", "library", "hybrid" or "time-series".
    n_components : int
        Mixture components used (distinct counts for the library method).
    component_means, component_weights : ndarray (n_components,)
    component_width : float
        Shared standard deviation of the components [Å²].
    icl, aic, bic : ndarray (g_max,)
        Criteria for G = 1..g_max (empty for the library method).
    library_scale, library_offset : float or None
        Fitted relation ``SCS ~ scale * library + offset`` (hybrid, and the alignment
        of the ICL mixture with a library).
    candidates : list of dict
        Every G, ranked, with its ICL, depth as a minimum, penalties and reasons.
    notes : list of str
        What was decided and why, and any warnings about the data.
    scs : ndarray
        The SCS that were counted (NaN where dropped).
    """

    counts: np.ndarray
    probability: np.ndarray
    count_values: np.ndarray
    posterior: np.ndarray
    method: str
    n_components: int
    component_means: np.ndarray
    component_weights: np.ndarray
    component_width: float
    icl: np.ndarray
    aic: np.ndarray
    bic: np.ndarray
    scs: np.ndarray
    library_scale: float | None = None
    library_offset: float | None = None
    candidates: list = dataclasses.field(default_factory=list)
    notes: list = dataclasses.field(default_factory=list)
    metadata: dict = dataclasses.field(default_factory=dict)

    _ARRAYS = ("counts", "probability", "count_values", "posterior", "component_means", "component_weights", "icl",
               "aic", "bic", "scs")  # fmt: skip

    def __post_init__(self):
        for name in self._ARRAYS:
            value = getattr(self, name)
            # a read-only array that owns its memory is frozen already: no copy of a (columns, counts) posterior
            frozen = isinstance(value, np.ndarray) and not value.flags.writeable and value.base is None
            arr = value if frozen else np.array(value)
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)

    @property
    def valid(self) -> np.ndarray:
        return self.counts >= 0

    @property
    def total_atoms(self):
        """Total atoms (per frame for a time series)."""
        return np.where(self.valid, self.counts, 0).sum(axis=-1)

    @property
    def n_columns(self) -> int:
        return int(self.counts.shape[-1])

    def summary(self) -> dict:
        return {"method": self.method, "n_columns": self.n_columns, "n_components": int(self.n_components),
                "total_atoms": np.asarray(self.total_atoms).tolist(), "library_scale": self.library_scale,
                "library_offset": self.library_offset, "mean_probability": float(np.mean(self.probability[self.valid]))
                if self.valid.any() else None, "notes": list(self.notes)}  # fmt: skip

    def __repr__(self) -> str:
        return (f"ColumnCounts({self.method}, {self.n_columns} columns, G = {self.n_components}, "
                f"{self.summary()['total_atoms']} atoms)")  # fmt: skip

    def to_hdf5(self, path) -> None:
        attrs = {k: getattr(self, k) for k in ("method", "n_components", "component_width", "library_scale",
                                               "library_offset", "candidates", "notes", "metadata")}  # fmt: skip
        write_hdf5(path, _KIND, {k: getattr(self, k) for k in self._ARRAYS}, attrs)

    @classmethod
    def from_hdf5(cls, path) -> ColumnCounts:
        arrays, attrs = read_hdf5(path, _KIND, result_type=cls)
        return cls(**attrs, **{k: arrays[k] for k in cls._ARRAYS})

    def to_csv(self, path) -> None:
        """One row per column (and frame): index, frame, SCS, count, probability."""
        counts = np.atleast_2d(self.counts)
        prob = np.atleast_2d(self.probability)
        scs = np.atleast_2d(self.scs)
        with atomic_path(path) as tmp, open(tmp, "w") as fh:
            fh.write("column,frame,scs_angstrom2,count,probability\n")
            for f in range(counts.shape[0]):
                for i in range(counts.shape[1]):
                    fh.write(f"{i},{f},{scs[f, i]:.8g},{counts[f, i]},{prob[f, i]:.6f}\n")

    @staticmethod
    def read_csv(path) -> dict:
        """The CSV's columns as arrays (counts, probability, scs, column, frame)."""
        data = np.genfromtxt(path, delimiter=",", names=True)
        return {"column": data["column"].astype(int), "frame": data["frame"].astype(int),
                "scs": data["scs_angstrom2"], "counts": data["count"].astype(int),
                "probability": data["probability"]}  # fmt: skip


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


def _listing(x, idx, name, shown=5):
    """``name[i] = value`` for the first few of ``idx``, for a message."""
    items = ", ".join(f"{name}[{int(i)}] = {x[i]:.6g}" for i in idx[:shown])
    return items + (", ..." if idx.size > shown else "")


def _clean_scs(scs, scs_errors=None, mask=None, name="scs"):
    """SCS as float64, the mask of columns to count and their errors, all checked.

    Every counted SCS must be finite and >= 0: NaN, inf and negative values are
    refused with how many and which. Columns that are not to be counted (a fit
    that did not converge) are left out with ``mask`` (False: counted -1), and
    their SCS may then be anything. NaN and +inf errors mean "unknown";
    negative ones are refused.
    """
    x = check_real_array(scs, name)
    if x.ndim != 1:
        raise ValueError(f"{name} must be a 1D array, got shape {x.shape}")
    if x.size == 0:
        raise ValueError(f"{name} must not be empty")
    if mask is None:
        ok = np.ones(x.shape, dtype=bool)
    else:
        ok = np.asarray(mask)
        if ok.dtype != bool:
            raise TypeError(f"mask must be an array of bool (True: count the column), got dtype {ok.dtype}")
        if ok.shape != x.shape:
            raise ValueError(f"mask must have the shape of {name} {x.shape}, got {ok.shape}")
        if not ok.any():
            raise ValueError(f"mask leaves no column to count (all {ok.size} are False)")
        ok = ok.copy()
    bad = np.flatnonzero(ok & ~np.isfinite(x))
    if bad.size:
        raise ValueError(f"{name} must be finite, got {bad.size} NaN/inf of {int(ok.sum())} counted values "
                         f"({_listing(x, bad, name)}); leave columns that are not to be counted out with mask= "
                         "(e.g. mask=fit.converged), or drop them")  # fmt: skip
    negative = np.flatnonzero(ok & (x < 0))
    if negative.size:
        raise ValueError(f"{name} must be >= 0 (a cross-section), got {negative.size} negative of {int(ok.sum())} "
                         f"counted values ({_listing(x, negative, name)}); check the background of the fit, or "
                         "leave these columns out with mask=")  # fmt: skip
    check_scs_magnitude(x[ok], name)
    err = None
    if scs_errors is not None:
        err = check_real_array(scs_errors, "scs_errors")
        if err.shape != x.shape:
            raise ValueError(f"scs_errors must have the shape of {name} {x.shape}, got {err.shape}")
        negative = np.flatnonzero(err < 0)
        if negative.size:
            i = int(negative[0])
            raise ValueError(f"scs_errors must be >= 0 (NaN where unknown), got scs_errors[{i}] = {err[i]:.6g}")
        check_magnitude(err, "scs_errors", largest=SCS_LARGEST)
    return x, ok, err


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
#: The hybrid EM refines the scan's scale within this relative window (see :func:`hybrid_em`).
SCAN_WINDOW = 0.03

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


def _check_normalised(normalised):
    if normalised is not None and not isinstance(normalised, bool | np.bool_):
        raise TypeError(f"normalised must be True, False or None, got {normalised!r}")
    return None if normalised is None else bool(normalised)


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
    g = flat.n_components
    post = flat.posterior.reshape(*y.shape, g)
    ok = flat.counts.reshape(y.shape) >= 0
    logp = np.log(np.maximum(post, 1e-300))
    logp[~ok] = 0.0  # an unmeasured frame says nothing
    # transitions between components, by the difference of their counts
    d = np.abs(np.subtract.outer(flat.count_values, flat.count_values))
    trans = np.where(d == 0, stay_probability, np.where(d == 1, (1 - stay_probability) / 2,
                                                           (1 - stay_probability) / 2000))  # fmt: skip
    trans /= trans.sum(axis=1, keepdims=True)
    logt = np.log(trans)
    n_frames, n_cols = y.shape
    path = np.zeros((n_frames, n_cols), dtype=np.int64)
    score = logp[0] - np.log(g)
    back = np.zeros((n_frames, n_cols, g), dtype=np.int64)
    for f in range(1, n_frames):
        cand = score[:, :, None] + logt[None]
        back[f] = cand.argmax(axis=1)
        score = cand.max(axis=1) + logp[f]
    path[-1] = score.argmax(axis=1)
    for f in range(n_frames - 1, 0, -1):
        path[f - 1] = back[f, np.arange(n_cols), path[f]]
    counts = np.where(ok, flat.count_values[path], -1)
    prob = np.where(ok, np.take_along_axis(post, path[..., None], axis=2)[..., 0], 0.0)
    independent = flat.counts.reshape(y.shape)
    changed = int(np.sum(counts != independent))
    notes = list(flat.notes) + [f"{changed} of {int(ok.sum())} frame counts changed by the temporal coupling"]
    meta = dict(flat.metadata, independent_counts=independent.tolist(), stay_probability=stay_probability)
    return dataclasses.replace(flat, counts=counts, probability=prob, posterior=post, method="time-series",
                               scs=y, notes=notes, metadata=meta)  # fmt: skip
