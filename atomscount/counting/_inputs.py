"""Checks of the SCS the counting methods accept, and the rounding that makes their choices reproducible."""

from __future__ import annotations

import numpy as np

from .._checks import check_magnitude, check_real_array

#: Largest |SCS| accepted [Å², or detector counts × Å²]. Normalised SCS are 1e-4..1e2 Å² and unnormalised
#: ones (detector counts × Å²) stay below about 1e9. Beyond 1e12 nothing physical is left, and well before
#: 1e150 the fits' variances and sums of squares overflow float64 (SCS × 1e300 ended in ZeroDivisionError).
SCS_LARGEST = 1e12
#: Smallest largest-|SCS| accepted: SCS that are all below it (all zero, or 1e-300 Å²) leave variances
#: that underflow float64, and nothing to count.
SCS_SMALLEST = 1e-12
#: Significant bits the SCS keep before mixtures are fitted (a relative 1e-6, far below any SCS error).
SCS_BITS = 20


def check_scs_magnitude(values, name: str) -> None:
    """Raise ValueError unless the largest finite absolute value lies within SCS_SMALLEST..SCS_LARGEST."""
    check_magnitude(values, name, largest=SCS_LARGEST, smallest=SCS_SMALLEST,
                    why=" [Å², or detector counts × Å²] (outside 1e-12..1e12 the fits' variances overflow or "
                        "underflow float64)")  # fmt: skip


def round_scs(x) -> np.ndarray:
    """``x`` rounded to SCS_BITS significant bits (each value on its own, so an outlier costs the rest nothing).

    Mixture fits are chaotic far above the physical G: where EM converges slowly
    a change of 1e-13 in the SCS can land a start in another local optimum and
    move the ICL there by 100. Fitted to the rounded SCS, the mixtures, the ICL
    and the choice of G are the same for SCS that differ by floating-point noise
    (a relative change ``e`` moves a value across a rounding boundary with
    probability ``e * 2**SCS_BITS``: 1e-7 for ``e = 1e-13``).
    """
    mantissa, exponent = np.frexp(np.asarray(x, dtype=np.float64))
    return np.ldexp(np.round(np.ldexp(mantissa, SCS_BITS)), exponent - SCS_BITS)


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


def _check_normalised(normalised):
    if normalised is not None and not isinstance(normalised, bool | np.bool_):
        raise TypeError(f"normalised must be True, False or None, got {normalised!r}")
    return None if normalised is None else bool(normalised)
