"""Shared input checks. Every message names the argument and the value it got."""

from __future__ import annotations

import numbers

import numpy as np

__all__ = [
    "check_2d_image",
    "check_positive",
    "check_positions",
    "check_rng",
    "check_choice",
    "check_integer",
    "check_real",
    "check_increasing",
    "check_magnitude",
    "check_real_array",
    "memory_limit_bytes",
    "check_memory",
    "check_bool",
    "check_labels",
    "check_column_count",
    "check_column_spacing",
    "MIN_COLUMN_SPACING_ANGSTROM",
    "check_3d_volume",
    "check_positions_3d",
]


def check_positive(value, name: str, *, allow_zero: bool = False) -> float:
    """Return ``value`` as a float, raising if it is not a finite positive number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if allow_zero:
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    elif value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return value


def memory_limit_bytes() -> int:
    """The most memory one kernel call may ask for: half the machine's RAM, or half the
    process's address-space limit (``ulimit -v``) where that is lower."""
    import os
    import resource

    limit = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        limit = min(limit, soft // 2)
    return int(limit)


def check_memory(n_bytes: float, what: str) -> None:
    """Refuse work whose arrays would need more than :func:`memory_limit_bytes`."""
    limit = memory_limit_bytes()
    if n_bytes > limit:
        raise ValueError(
            f"{what} would need {n_bytes / 2**30:.3g} GiB, over the limit of {limit / 2**30:.3g} GiB "
            "(half the memory available)"
        )


def check_choice(value, name: str, choices) -> str:
    """Raise unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value


def check_2d_image(data, name: str = "image", *, allow_nonfinite: bool = False) -> np.ndarray:
    """Return ``data`` as a 2D float64 array, raising on wrong dimensions or bad pixels."""
    arr = np.asarray(data)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2D array, got {arr.ndim}D with shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}")
    arr = arr.astype(np.float64, copy=False)
    if not allow_nonfinite:
        bad = ~np.isfinite(arr)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise ValueError(
                f"{name} has {int(bad.sum())} NaN/inf pixels (first at row {r}, col {c}); "
                "pass mask_invalid=True to ignore them"
            )
    return arr


def check_positions(positions, name: str = "positions") -> np.ndarray:
    """Return positions as an ``(n, 2)`` float64 array of (x, y) in Å."""
    arr = np.asarray(positions, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 2))
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"{name} must have shape (n, 2) holding (x, y) in Å, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {int((~np.isfinite(arr)).sum())} NaN/inf")
    return arr


def check_rng(rng) -> np.random.Generator:
    """Turn ``rng`` (Generator, int seed or None) into a Generator."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, numbers.Integral):
        return np.random.default_rng(rng)
    raise TypeError(f"rng must be a numpy Generator, an int seed or None, got {rng!r}")


def _describe(value) -> str:
    """``repr`` of a value followed by its type, which the repr alone may hide (``'3'`` or ``3``, ``2.0``)."""
    return f"{value!r} ({type(value).__name__})"


def check_integer(value, name: str, *, low: int | None = None, high: int | None = None, why: str = "") -> int:
    """Return ``value`` as an int, raising unless it is an integer within ``low..high``.

    Booleans, strings and floats (even ``2.0``) are not integers here: a float
    count is usually a computation gone wrong upstream. NumPy integers are accepted.
    ``why``, when given, follows the requirement in the message, e.g. ``" (a column holds at least one atom)"``.

    Raises
    ------
    TypeError
        If ``value`` is not an integer.
    ValueError
        If it lies outside ``low..high`` (either bound may be None).
    """
    if low is not None and high is not None:
        want = f"an integer within {low}..{high}"
    elif low is not None:
        want = f"an integer >= {low}"
    elif high is not None:
        want = f"an integer <= {high}"
    else:
        want = "an integer"
    want += why
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be {want}, got {_describe(value)}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be {want}, got {value!r}")
    return value


def check_real(value, name: str, *, low: float | None = None, high: float | None = None, open_low: bool = False,
               open_high: bool = False, why: str = "") -> float:  # fmt: skip
    """Return ``value`` as a finite float within the interval from ``low`` to ``high``.

    ``open_low`` / ``open_high`` exclude the bound itself, as in ``(0, 1)``; ``why``
    follows the requirement in the message.

    Raises
    ------
    TypeError
        If ``value`` is not a real number (booleans and strings are not).
    ValueError
        If it is NaN or infinite, or outside the interval.
    """
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {_describe(value)}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    below = low is not None and (value <= low if open_low else value < low)
    above = high is not None and (value >= high if open_high else value > high)
    if below or above:
        if low is not None and high is not None:
            want = f"lie in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
        elif low is not None:
            want = f"be {'>' if open_low else '>='} {low:g}"
        else:
            want = f"be {'<' if open_high else '<='} {high:g}"
        raise ValueError(f"{name} must {want}{why}, got {value}")
    return value


def check_increasing(values, name: str, *, positive: bool = False) -> np.ndarray:
    """Return ``values`` as a 1D float64 array, raising unless it is finite and strictly increasing.

    With ``positive`` the first value must also be above zero. The message names
    the first offending entry and its value.

    Raises
    ------
    TypeError
        If the values are not real numbers.
    ValueError
        If they are not 1D, empty, not finite, or not strictly increasing.
    """
    arr = np.asarray(values)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1D array, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(f"{name} must be finite, got {bad.size} NaN/inf (first {name}[{bad[0]}] = {arr[bad[0]]})")
    if positive and not arr[0] > 0:
        raise ValueError(f"{name} must start above zero, got {name}[0] = {arr[0]:.6g}")
    down = np.flatnonzero(np.diff(arr) <= 0)
    if down.size:
        i = int(down[0]) + 1
        raise ValueError(f"{name} must increase strictly, got {name}[{i}] = {arr[i]:.6g} after "
                         f"{name}[{i - 1}] = {arr[i - 1]:.6g}")  # fmt: skip
    return arr


def check_magnitude(values, name: str, *, largest: float, smallest: float = 0.0, why: str = "") -> None:
    """Raise unless the largest absolute finite value lies within ``smallest..largest``.

    NaN and inf are left to the caller (some inputs mark missing values with them);
    ``why`` follows the requirement in the message.

    Raises
    ------
    ValueError
        If the largest magnitude lies outside ``smallest..largest``.
    """
    arr = np.abs(np.asarray(values, dtype=np.float64))
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return
    top = float(arr.max())
    if top > largest:
        raise ValueError(f"{name} must lie within ±{largest:.3g}{why}, got a value of magnitude {top:.3g}")
    if top < smallest:
        raise ValueError(f"{name} must reach a magnitude of at least {smallest:.3g}{why}, got at most {top:.3g}")


def check_real_array(values, name: str) -> np.ndarray:
    """Return ``values`` as a float64 array, raising TypeError unless they are real numbers.

    Strings, objects and complex numbers are refused rather than converted, so
    ``["1", "2"]`` or a list holding None does not slip through. NaN and inf are
    left to the caller.
    """
    try:
        arr = np.asarray(values)
    except ValueError as exc:  # ragged nested sequences
        raise TypeError(f"{name} must be an array of real numbers, got {type(values).__name__} ({exc})") from exc
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False)


def check_bool(value, name: str) -> bool:
    """Return ``value`` as a bool, raising TypeError unless it is True or False (a NumPy bool too).

    A string such as ``"no"`` is truthy, so it is refused rather than taken as True.
    """
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be True or False, got {_describe(value)}")
    return bool(value)


def check_labels(values, name: str, n: int) -> np.ndarray:
    """Return ``values`` as an ``(n,)`` array of labels (strings or integers), one per item.

    None, floats (NaN among them) and other objects are refused with the index of the first one, so
    that sorting the labels cannot fail inside NumPy.
    """
    arr = np.asarray(values, dtype=object if isinstance(values, list | tuple) else None)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have one entry per column ({n}), got shape {arr.shape}")
    if arr.dtype.kind in "iuU":
        return arr
    bad = [i for i, v in enumerate(arr.tolist()) if isinstance(v, bool) or not isinstance(v, str | numbers.Integral)]
    if bad:
        raise TypeError(f"{name} must hold labels (str or int), got {_describe(arr[bad[0]])} at {name}[{bad[0]}]")
    return np.asarray(arr.tolist())  # str where any label is one


#: Start positions closer than this [Å] are not distinct atomic columns: HAADF-STEM
#: resolves projected columns down to about 0.5 Å at best.
MIN_COLUMN_SPACING_ANGSTROM = 0.5


def check_column_count(n: int, n_pixels: int, name: str = "positions") -> None:
    """Refuse more columns than pixels before any neighbour search (whose memory grows as n²
    for positions crowded into a small image)."""
    if n > n_pixels:
        raise ValueError(f"{name}: {n} columns inside the image make at least {3 * n} parameters, but the image "
                         f"has only {n_pixels} valid pixels; fit fewer columns or a larger image")  # fmt: skip


def check_column_spacing(positions, name: str = "positions", *, minimum: float = MIN_COLUMN_SPACING_ANGSTROM) -> None:
    """Refuse positions of which most lie closer than ``minimum`` [Å] to another: a grid or a
    cloud of guesses, not atomic columns, whose fit would invent columns between the real ones.
    A few close pairs (a column given twice) pass: the fit merges or flags them."""
    from scipy.spatial import cKDTree

    pos = np.asarray(positions, dtype=np.float64)
    if len(pos) < 3:
        return
    nn = cKDTree(pos).query(pos, k=2)[0][:, 1]
    close = int((nn < minimum).sum())
    if close > len(pos) / 2:
        raise ValueError(f"{name}: {close} of {len(pos)} columns lie closer than {minimum:g} Å to another (median "
                         f"distance to the nearest {np.median(nn):.3g} Å); atomic columns are not resolved that "
                         "close: give one position per column, e.g. from find_columns")  # fmt: skip


def check_3d_volume(data, name: str = "volume.data", *, min_size: int = 3) -> np.ndarray:
    """Return ``data`` as a 3D float64 array of finite voxels, at least ``min_size`` along each axis."""
    arr = np.asarray(data)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim != 3:
        raise ValueError(f"{name} must be a 3D array (z, y, x), got {arr.ndim}D with shape {arr.shape}")
    if min(arr.shape) < min_size:
        raise ValueError(f"{name} must have at least {min_size} voxels along each axis, got shape {arr.shape}")
    arr = arr.astype(np.float64, copy=False)
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(f"{name} must be finite, got {int(bad.sum())} NaN/inf voxels of {arr.size} (first at "
                         f"z, y, x = {tuple(int(i) for i in np.argwhere(bad)[0])})")  # fmt: skip
    return arr


def check_positions_3d(positions, name: str = "positions") -> np.ndarray:
    """Return positions as an ``(n, 3)`` float64 array of finite (x, y, z) in Å."""
    arr = check_real_array(positions, name)
    if arr.size == 0:
        return np.zeros((0, 3))
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"{name} must have shape (n, 3) holding (x, y, z) in Å, got {arr.shape}")
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name} must be finite, got {int(bad.sum())} atoms with NaN/inf (first {name}[{i}] = "
                         f"{arr[i].tolist()})")  # fmt: skip
    return arr
