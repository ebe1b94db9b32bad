"""The range of SCS values the counting methods accept, and the rounding that makes their choices reproducible."""

from __future__ import annotations

import numpy as np

from .._checks import check_magnitude

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
