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
    "check_int",
    "memory_limit_bytes",
    "check_memory",
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


def check_int(value, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """Return ``value`` as an int, raising unless it is an integer (not a bool) within the bounds."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
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
