"""Shared helpers of the two column detectors: length checks and the minimum spacing of peaks."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from .._checks import check_positive


def check_distance(value, name, image, *, optional=False, allow_zero=False):
    """A length [Å] that must be positive and smaller than the image (a larger one only
    makes the filters' memory and time grow)."""
    if value is None and optional:
        return None
    value = check_positive(value, name, allow_zero=allow_zero)
    extent = max(image.shape) * image.pixel_size_angstrom
    if value > extent:
        raise ValueError(f"{name} must be smaller than the image ({extent:.4g} Å across), got {value:.4g}")
    return value


def _enforce_spacing(peaks, values, dmin_px):
    """Drop every peak (row, col) closer than ``dmin_px`` to one with a higher value."""
    if len(peaks) < 2:
        return peaks
    order = np.argsort(-np.asarray(values), kind="stable")
    peaks = peaks[order]
    tree = cKDTree(peaks)
    keep = np.ones(len(peaks), dtype=bool)
    for i in range(len(peaks)):
        if keep[i]:
            for j in tree.query_ball_point(peaks[i], dmin_px - 1e-9):
                if j > i:
                    keep[j] = False
    return peaks[keep]
