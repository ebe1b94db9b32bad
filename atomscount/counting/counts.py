"""Atom counts per column: the result type and the three counting methods."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
from scipy.special import logsumexp

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
from .gmm import MixtureScan, fit_mixtures
from .select import select_components

__all__ = ["ColumnCounts", "check_library_settings", "count_atoms", "count_by_library", "count_hybrid",
           "count_time_series"]  # fmt: skip

_KIND = "ColumnCounts"


@dataclasses.dataclass(frozen=True, repr=False)
class ColumnCounts:
    """Number of atoms in every column, with how sure each count is.

    Attributes
    ----------
    counts : ndarray (n,) or (n_frames, n) of int
        Atoms per column; -1 where the SCS was not finite (dropped).
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
        Ranked ICL local minima with their penalties and reasons.
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
            arr = np.array(getattr(self, name))
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


def _clean_scs(scs, scs_errors=None):
    """SCS as float64 (NaN/inf dropped with a warning), their finite mask and their errors, all checked.

    NaN and +inf errors mean "unknown"; negative ones are refused.
    """
    x = check_real_array(scs, "scs")
    if x.ndim != 1:
        raise ValueError(f"scs must be a 1D array, got shape {x.shape}")
    if x.size == 0:
        raise ValueError("scs must not be empty")
    ok = np.isfinite(x)
    if not ok.any():
        raise ValueError(f"scs holds no finite values (all {x.size} are NaN/inf)")
    check_scs_magnitude(x[ok], "scs")
    if not ok.all():
        warnings.warn(f"dropped {int((~ok).sum())} NaN/inf SCS values (count -1)", stacklevel=3)
    err = None
    if scs_errors is not None:
        err = check_real_array(scs_errors, "scs_errors")
        if err.shape != x.shape:
            raise ValueError(f"scs_errors must have the shape of scs {x.shape}, got {err.shape}")
        negative = np.flatnonzero(err < 0)
        if negative.size:
            i = int(negative[0])
            raise ValueError(f"scs_errors must be >= 0 (NaN where unknown), got scs_errors[{i}] = {err[i]:.6g}")
        check_magnitude(err, "scs_errors", largest=SCS_LARGEST)
    return x, ok, err


def _library_table(library, n_max=None):
    """(counts, SCS, s.e.) of a library, as arrays; extrapolated up to ``n_max`` if asked.

    The SCS must be finite, above zero, strictly increasing and within the range
    allowed for SCS (see :data:`SCS_LARGEST`), also where the thickness curve extends them.
    """
    from ..library import ScsLibrary

    if isinstance(library, ScsLibrary):
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
    if isinstance(library, str | bytes | dict):
        raise TypeError(f"library must be an ScsLibrary or a 1D array of SCS for 1, 2, ... atoms, got "
                        f"{type(library).__name__}")  # fmt: skip
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

    def misfit(scale):
        y = x / scale
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
                     "consider method='hybrid'")  # fmt: skip
    return notes


def count_by_library(scs, library, *, scs_errors=None, max_count=None) -> ColumnCounts:
    """Count atoms by comparison with a simulated library.

    Each column gets the count whose library SCS is most probable given the
    column's SCS error and the library's own uncertainty (Gaussian likelihood,
    flat prior over counts); with equal errors that is the nearest library value.

    Parameters
    ----------
    scs : array_like (n,)
    library : ScsLibrary or array_like
        A library, or SCS values for 1, 2, ... atoms.
    scs_errors : array_like (n,), optional
        Standard errors of the SCS. Without them one width is estimated from the
        residuals about the nearest library values.
    max_count : int, optional
        Largest count considered; beyond the library it is extrapolated with the
        library's thickness curve. By default just enough to cover the data.

    Raises
    ------
    ValueError
        If most SCS lie more than twice beyond the library's largest value: the
        image was not normalised to the incident beam (the message gives the
        ratio and how to normalise). A few SCS far beyond only warn (spurious
        columns); their counts are capped at twice the library's range. Also
        for SCS that are empty, all NaN/inf or beyond ±1e12 (see
        :data:`atomscount.counting._inputs.SCS_LARGEST`), negative
        ``scs_errors``, ``max_count`` below 1, and a library whose SCS are not
        finite, above zero and strictly increasing.
    TypeError
        If ``max_count`` is not an integer, or the SCS or the library are not real numbers.
    """
    x, ok, err = _clean_scs(scs, scs_errors)
    if max_count is not None:
        max_count = check_integer(max_count, "max_count", low=1)
    _, tab0, _ = _library_table(library)
    off = _far_off(x[ok], tab0)
    if off is not None and off[0] > 1:
        raise ValueError(f"{off[1]}: the SCS are not normalised like the library, and counting them against it "
                         f"would cap every count. Either {NORMALISE_HINT}, or count with method='hybrid', which "
                         "fits the scale")  # fmt: skip
    top = max_count or _library_extent(library, x[ok])
    n, tab, sem = _library_table(library, top)
    if err is None:
        k = np.abs(x[ok, None] - tab[None, :]).argmin(axis=1)
        resid = x[ok] - tab[k]
        sd = 1.4826 * np.median(np.abs(resid - np.median(resid)))
        sd = max(sd, 1e-3 * np.median(np.diff(np.concatenate([[0], tab]))))
        err_sd = np.full(x.shape, sd)
        estimated = True
    else:
        known = np.isfinite(err) & (err > 0)
        if not known[ok].any():
            raise ValueError("scs_errors must hold at least one finite value > 0 among the finite SCS, got none "
                             "(leave scs_errors out to estimate one spread from the data)")  # fmt: skip
        err_sd = np.where(known, err, np.median(err[known]))
        estimated = False
    var = err_sd[ok, None] ** 2 + sem[None, :] ** 2
    logp = -0.5 * (x[ok, None] - tab[None, :]) ** 2 / var - 0.5 * np.log(var)
    post_ok = np.exp(logp - logsumexp(logp, axis=1, keepdims=True))
    counts, prob, post = _assign(x, ok, post_ok, n)
    notes = _library_sanity(x[ok], tab, err_sd[ok])
    for note in notes:
        warnings.warn(note, stacklevel=2)
    if estimated:
        notes.append(f"no scs_errors given: one SCS spread of {err_sd[0]:.4g} Å² estimated from the residuals")
    used = np.unique(counts[ok])
    return ColumnCounts(counts, prob, n, post, "library", int(len(used)), tab[used - 1], np.array(
        [np.mean(counts[ok] == u) for u in used]), float(np.median(err_sd)), np.zeros(0), np.zeros(0), np.zeros(0),
        x, 1.0, 0.0, [], notes, {"library": _library_name(library)})  # fmt: skip


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
                n_starts: int = 6, microscope: dict | None = None, rng=None,
                progress: bool = False) -> ColumnCounts:  # fmt: skip
    """Count the atoms in every column from its SCS.

    Parameters
    ----------
    scs : array_like (n,)
        Scattering cross-sections [Å²], e.g. ``fit.scs``.
    method : {"icl", "library", "hybrid"}
        ``"icl"``: Gaussian mixture, G chosen among the ICL local minima by
        physical consistency (see :mod:`atomscount.counting.select`).
        ``"library"``: nearest library value (:func:`count_by_library`).
        ``"hybrid"``: mixture whose means are the library values up to one fitted
        scale and offset (:func:`count_hybrid`).
    library : ScsLibrary or array_like, optional
        Needed for "library" and "hybrid"; for "icl" it judges the candidates and
        maps components to counts.
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
        are empty, all NaN/inf or beyond ±1e12 (squares of larger ones overflow
        the fits), negative ``scs_errors``, or SCS far outside the library's
        range for "library" and "icl" (the message gives the ratio and how to
        normalise the image; "hybrid" fits the scale instead, see
        :func:`count_hybrid`). NaN and inf SCS are not an error: they are
        dropped with a warning and counted -1. A single SCS gets one component.
    TypeError
        If an integer argument is not an integer (booleans, strings and floats
        are not), ``dose`` is not a real number, or the SCS are not real numbers.

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
    rng = check_rng(rng)
    if library is not None:
        _library_table(library)  # refuse a bad library before the mixtures are fitted
    mismatch = check_library_settings(library, microscope)
    for msg in mismatch:
        warnings.warn(msg, stacklevel=2)
    if method in ("library", "hybrid"):  # they check the SCS themselves (and warn once about NaN)
        if method == "library":
            res = count_by_library(scs, library, scs_errors=scs_errors)
        else:
            res = count_hybrid(scs, library, scs_errors=scs_errors, rng=rng)
        return dataclasses.replace(res, notes=list(res.notes) + mismatch) if mismatch else res
    x, ok, err = _clean_scs(scs, scs_errors)
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


def count_hybrid(scs, library, *, scs_errors=None, fit_offset: bool = False, scale_prior_sd: float = 0.1,
                 max_iter: int = 500, tol: float = 1e-9, rng=None) -> ColumnCounts:  # fmt: skip
    """Mixture counting with the library as prior knowledge.

    Component ``N`` has mean ``scale * L(N) + offset`` (``L`` the library, every
    count from 1 to just beyond the data) and a free weight that may fall to
    zero. Column ``i`` scatters about it with variance ``e_i^2 + t^2``: its own
    SCS error ``e_i`` (when given) plus one fitted spread ``t`` for everything
    the errors leave out. EM fits scale, offset, width and weights together, so
    a library whose normalisation is off by a few per cent, or a thickness that
    is missing from the data, does not shift the counts. The fitted scale is
    reported: far from 1, the image normalisation deserves a look.

    The scale is only freed when the data support it (BIC against the scale held
    at 1), and it has a log-normal prior about 1 with ``scale_prior_sd``: without it
    a mixture with free weights cannot tell the library at scale ``s`` from the
    library at ``2**-p * s`` with every other component empty. The offset is off
    by default because, for a nearly linear library, it trades against a shift
    of every count by one.

    Unnormalised SCS (detector counts times Å², typically 10⁴ times the
    library) lie beyond the prior's reach. When the median SCS is more than
    twice beyond the library's range, the scale is first found freely, by
    aligning the data's spacing with the library's increments: for every scale
    on a log grid (0.2 % steps, from all columns on the library's largest count
    to the thinnest on half a single atom) the library's values times the scale
    are the means of a mixture with free weights and one width, and BIC picks
    the scale (a finer lattice, every other count empty, fits no better but
    pays for twice the weights; a coarser one leaves half the columns between
    its values). The EM above then runs with the prior centred on that scale,
    and the notes say the scale was fitted freely.

    Parameters
    ----------
    scs : array_like (n,)
        SCS [Å², or detector counts × Å² before normalisation].
    library : ScsLibrary or array_like
    scs_errors : array_like (n,), optional
    fit_offset : bool
    scale_prior_sd : float
        Standard deviation of the log-normal prior on the scale.
    max_iter : int
    tol : float
    rng : Generator, int or None
        Accepted for a signature like :func:`count_atoms`'s; the fit is deterministic.

    Returns
    -------
    ColumnCounts

    Raises
    ------
    ValueError
        If the SCS are far off the library and no scaled library lattice fits
        them (one thickness only, or single counts not resolved); the message
        gives the ratio and how to normalise the image. Also for SCS and a
        library as in :func:`count_by_library`, ``scale_prior_sd`` not finite
        and > 0, ``max_iter`` below 1 and ``tol`` below 0.
    TypeError
        If ``max_iter`` is not an integer, or ``scale_prior_sd`` or ``tol`` not a real number.
    """
    check_choice(fit_offset, "fit_offset", {False, True})
    scale_prior_sd = check_positive(scale_prior_sd, "scale_prior_sd")
    max_iter = check_integer(max_iter, "max_iter", low=1)
    tol = check_real(tol, "tol", low=0.0)
    x, ok, err = _clean_scs(scs, scs_errors)
    # fitted to rounded SCS, the scale and the counts do not hinge on floating-point noise (see round_scs)
    xs = round_scs(x[ok])
    if err is not None:
        e = err[ok]
        known = np.isfinite(e) & (e > 0)
        e = np.where(known, e, np.median(e[known]) if known.any() else 0.0)
    else:
        e = np.zeros_like(xs)
    _, tab0, _ = _library_table(library)
    off = _far_off(xs, tab0)
    notes = []
    unit = 1.0
    if off is not None:
        unit, how = _free_scale(xs, library, tab0, off)
        notes.append(f"{off[1]}: the SCS are not normalised like the library, so the library scale was "
                     f"fitted freely: {how}; the hybrid EM refined it. To compare with the library directly, "
                     f"{NORMALISE_HINT}")  # fmt: skip
    # in units of the first estimate, the prior about 1 is centred on it
    best = _hybrid_fit(xs / unit, e / unit, err is not None, library, fit_offset, scale_prior_sd, max_iter, tol)
    n, tab = best["n"], best["tab"]
    scale, offset, extra = best["scale"] * unit, best["offset"] * unit, best["extra"] * unit
    weights, post_ok = best["weights"], best["tau"]
    sd = float(np.sqrt(np.median(e) ** 2 + extra**2))
    counts, prob, post = _assign(x, ok, post_ok, n)
    notes.insert(0, f"library scale {scale:.5g}, offset {offset:.4g} Å², spread beyond the SCS errors {extra:.3g} Å²")
    if not best["scale_supported"]:
        notes.append(f"a library scale other than {unit:.5g} is not supported by the data (BIC): scale held at "
                     f"{unit:.5g}")  # fmt: skip
    if off is None and abs(scale - 1) > 0.1:
        notes.append(f"the fitted library scale {scale:.3f} is far from 1: check the image normalisation")
    used = weights * xs.size >= 0.5
    loglik = float(best["ll"]) - xs.size * np.log(unit)  # of the SCS in their own units
    return ColumnCounts(counts, prob, n, post, "hybrid", int(used.sum()), scale * tab[used] + offset, weights[used],
                        float(sd), np.zeros(0), np.zeros(0), np.zeros(0), x, float(scale), float(offset), [], notes,
                        {"library": _library_name(library), "log_likelihood": loglik,
                         "free_scale": off is not None})  # fmt: skip


def _hybrid_fit(xs, e, have_errors, library, fit_offset, prior_sd, max_iter, tol, burn_in=30):
    """The hybrid fit of ``xs`` against the library at scales about 1 (see :func:`count_hybrid`)."""
    top = _library_extent(library, xs / 0.7)
    n, tab, _ = _library_table(library, top)
    inc = np.diff(np.concatenate([[0.0], tab]))
    width0 = (0.1 if have_errors else 0.25) * float(np.median(inc))
    # start the scale on a grid, a few EM steps each; the best start runs to convergence
    min_var = (1e-9 * width0) ** 2  # without SCS errors, the spread must not collapse to zero
    burned = [_hybrid_em(xs, e, tab, s0, 0.0, width0 * s0, fit_offset, prior_sd, burn_in, tol, min_var)
              for s0 in np.linspace(0.8, 1.25, 10)]  # fmt: skip
    ll, scale, offset, extra, weights, _ = max(burned, key=lambda r: r[0])
    best = _hybrid_em(xs, e, tab, scale, offset, max(extra, 1e-3 * width0), fit_offset, prior_sd, max_iter, tol,
                      min_var, weights=weights)  # fmt: skip
    # Is a scale other than 1 supported by the data? Compare with the scale held at 1 (BIC).
    fixed = _hybrid_em(xs, e, tab, 1.0, 0.0, width0, False, 1e-9, max_iter, tol, min_var)
    ll_free = best[0] + 0.5 * (np.log(best[1]) / prior_sd) ** 2
    n_free = 2 if fit_offset else 1
    supported = 2 * (ll_free - fixed[0]) > n_free * np.log(xs.size)
    chosen = best if supported else fixed
    ll, scale, offset, extra, weights, tau = chosen
    return {"ll": ll, "scale": scale, "offset": offset, "extra": extra, "weights": weights, "tau": tau, "n": n,
            "tab": tab, "scale_supported": bool(supported)}  # fmt: skip


def _free_scale(xs, library, tab0, off):
    """A library scale far from 1, from the profile likelihood of the library's lattice of values.

    For every scale ``s`` on a log grid (0.2 % steps) the data are fitted by a
    mixture whose means are ``s L(N)``, every count within the data's range,
    with free weights and one shared width (EM on a 2,000-bin histogram). BIC
    with one weight per count in range picks the scale: a finer lattice
    (``s / 2``, every other count empty) fits no better but pays for twice the
    weights, a coarser one leaves half the columns between its values. Returns
    (scale, statement); raises ValueError when the best lattice is no better
    than one Gaussian, the columns spread more than FREE_SCALE_SPREAD steps
    about it, or it fits less than FREE_SCALE_EVIDENCE better than a lattice
    of the midpoints between counts (which fits unresolved data as well).
    """
    from ..library import ScsLibrary
    from ._em import run_em
    from .gmm import _bin

    if np.unique(xs).size < 3:
        raise ValueError(f"scs: a free library scale needs at least 3 distinct SCS values, got {np.unique(xs).size}")
    x, w = _bin(np.sort(xs), np.ones(xs.size), 2000)
    n = xs.size
    n_top = 2 * len(tab0) if isinstance(library, ScsLibrary) else len(tab0)
    _, tab, _ = _library_table(library, n_top)
    inc = np.diff(np.concatenate([[0.0], tab]))
    x_lo, x_hi = np.quantile(xs, [0.005, 0.995])
    s_lo = x_hi / tab[-1]
    s_hi = 2 * x_lo / tab[0] if x_lo > 0 else x_hi / tab[0]
    grid = np.geomspace(s_lo, max(s_hi, 1.01 * s_lo), int(np.clip(np.log(max(s_hi / s_lo, 1.01)) / 0.002, 10, 20000)))
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

    bic = np.full(grid.size, np.inf)
    widths = np.zeros(grid.size)
    for j, s in enumerate(grid):
        ll, k, widths[j] = lattice_fit(s, tab)
        bic[j] = -2 * ll + k * np.log(n)
    best = int(np.argmin(bic))
    s = float(grid[best])
    # a lattice of the midpoints between counts fits smooth (unresolved) data as well as the counts do
    evidence = 2 * (lattice_fit(s, tab)[0] - lattice_fit(s, 0.5 * (tab[1:] + tab[:-1]))[0])
    with np.errstate(divide="ignore"):  # SCS all alike: one Gaussian fits infinitely well, and no lattice beats it
        one = n * (np.log(2 * np.pi * xs.var()) + 1) + 2 * np.log(n)  # BIC of a single Gaussian
    hopeless = (f"{off[1]}: the SCS are not normalised like the library, and no scale can be fitted from them "
                "({why}). To count against the library, " + NORMALISE_HINT)  # fmt: skip
    if not bic[best] < one - 10:
        raise ValueError(hopeless.format(why="no scaled library lattice fits them better than one Gaussian"))
    weak = []
    if widths[best] > FREE_SCALE_SPREAD:
        weak.append(f"the columns spread {widths[best]:.2f} single-atom steps about the library's values (more "
                    f"than {FREE_SCALE_SPREAD:g})")  # fmt: skip
    if evidence < FREE_SCALE_EVIDENCE:
        weak.append(f"the counts fit them better than the midpoints between counts by only {evidence:.0f} (twice "
                    "the log-likelihood)")  # fmt: skip
    if weak:
        why = f"at the best scale, {s:.5g}, {' and '.join(weak)}"
        raise ValueError(hopeless.format(why=why + ": single counts are not resolved well enough to fix the scale"))
    return s, (f"the library's values times {s:.5g} fit the SCS best (BIC over scales {grid[0]:.4g}.."
               f"{grid[-1]:.4g}; spread {widths[best]:.2f} single-atom steps; better than the midpoints between "
               f"counts by {evidence:.0f} in twice the log-likelihood)")  # fmt: skip


def _hybrid_em(x, err, tab, scale, offset, extra_sd, fit_offset, prior_sd, max_iter, tol, min_var, weights=None):
    """EM for the library-tied mixture; column i has variance err_i^2 + extra_sd^2.

    Without SCS errors the extra variance stays above ``min_var``.
    """
    k = len(tab)
    weights = np.full(k, 1.0 / k) if weights is None else np.asarray(weights, dtype=float).copy()
    e2 = err**2
    t2 = extra_sd**2
    prev = -np.inf
    ll = -np.inf
    tau = None
    for _ in range(max_iter):
        var = (e2 + t2)[:, None]
        mu = scale * tab + offset
        logp = np.log(np.maximum(weights, 1e-300)) - 0.5 * (x[:, None] - mu) ** 2 / var - 0.5 * np.log(var)
        lse = logsumexp(logp, axis=1, keepdims=True)
        ll = float(lse.sum() - 0.5 * x.size * np.log(2 * np.pi)) - 0.5 * (np.log(scale) / prior_sd) ** 2
        tau = np.exp(logp - lse)
        weights = tau.sum(axis=0) / x.size
        # weighted least squares of x on (L, 1), weights tau / var, plus the scale prior
        wt = tau / var
        lam = 1.0 / prior_sd**2
        sxx = np.sum(wt * tab**2) + lam
        sx = np.sum(wt * tab)
        s1 = np.sum(wt)
        sxy = np.sum(wt * tab * x[:, None]) + lam
        sy = np.sum(wt * x[:, None])
        if fit_offset:
            det = sxx * s1 - sx * sx
            scale = (sxy * s1 - sx * sy) / det
            offset = (sxx * sy - sx * sxy) / det
        else:
            scale = sxy / sxx
        mu = scale * tab + offset
        # extra spread beyond the SCS errors (moment estimate, >= 0)
        t2 = max(float(np.sum(tau * ((x[:, None] - mu) ** 2 - e2[:, None])) / x.size), 0.0)
        if not np.any(e2 > 0):
            t2 = max(t2, min_var)
        if abs(ll - prev) < tol * x.size:
            break
        prev = ll
    return ll, float(scale), float(offset), float(np.sqrt(t2)), weights, tau


def count_time_series(scs_frames, *, library=None, max_components: int = 50, scs_errors=None,
                      n_components: int | None = None, first_count: int | None = None, stay_probability: float = 0.95,
                      rng=None) -> ColumnCounts:  # fmt: skip
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
        SCS of the same columns (same order) in each frame; NaN where a column was
        not measured.
    library : ScsLibrary or array_like, optional
    max_components, scs_errors, n_components, first_count, rng
        As for :func:`count_atoms` (``scs_errors`` with the shape of ``scs_frames``).
    stay_probability : float
        Probability that a column keeps its count from one frame to the next, in (0, 1).

    Returns
    -------
    ColumnCounts
        ``counts`` of shape (n_frames, n_columns).

    Raises
    ------
    ValueError
        If ``scs_frames`` is not 2D or is empty, ``stay_probability`` lies outside
        (0, 1), and for the SCS and arguments as in :func:`count_atoms`.
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
    flat = count_atoms(y.ravel(), method="icl", library=library, max_components=max_components,
                       scs_errors=scs_errors, n_components=n_components, first_count=first_count,
                       rng=rng)  # fmt: skip
    g = flat.n_components
    post = flat.posterior.reshape(*y.shape, g)
    ok = np.isfinite(y)
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
