"""Checks of :func:`~atomscount.columns.fit.fit_columns`'s arguments and start positions.

Every message names the argument and the value it got; crowded start positions are
refused before any neighbour search, whose memory grows with the square of their
number.
"""

from __future__ import annotations

import numpy as np

from .._checks import (
    check_bool,
    check_choice,
    check_column_count,
    check_integer,
    check_labels,
    check_positive,
)
from ..image import HAADFImage


def check_fit_arguments(image, *, width, background, noise, max_iter, width_init_angstrom, tol, max_shift_angstrom,
                        flags: dict) -> int:  # fmt: skip
    """Check fit_columns's options; return ``max_iter`` as an int. ``flags``: name -> a value that must be a bool."""
    if not isinstance(image, HAADFImage):
        raise TypeError(f"image must be a HAADFImage, got {type(image).__name__}")
    check_choice(width, "width", {"shared", "free"})
    check_choice(background, "background", {"constant", "plane"})
    if background == "plane" and min(np.shape(image.data)[:2]) < 2:  # a slope along one pixel is not determined
        raise ValueError(f"background='plane' needs an image at least 2 pixels along each axis, got shape "
                         f"{np.shape(image.data)}; use background='constant'")  # fmt: skip
    check_choice(noise, "noise", {"gaussian", "poisson"})
    max_iter = check_integer(max_iter, "max_iter", low=1)
    for name, value in (("width_init_angstrom", width_init_angstrom), ("max_shift_angstrom", max_shift_angstrom)):
        if value is not None:
            check_positive(value, name)
    if not 0 < check_positive(tol, "tol") <= 1:
        raise ValueError(f"tol must be in (0, 1], got {tol}")
    for name, value in flags.items():
        check_bool(value, name)
    return max_iter


def type_index(types, n: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """(index of each column's type, the type names) from labels, one per column; one type without them."""
    if types is None:
        return np.zeros(n, dtype=np.int64), ("column",)
    names, idx = np.unique(check_labels(types, "types", n), return_inverse=True)
    return idx.astype(np.int64), tuple(str(v) for v in names)


def check_crowding(image: HAADFImage, positions: np.ndarray, n_pixels: int) -> None:
    """Refuse more start positions inside the image than it has valid pixels (before any neighbour search)."""
    check_column_count(int(image.contains(positions).sum()), n_pixels, "positions")
