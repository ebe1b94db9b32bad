"""Geometry of the columns for :func:`~.fit.fit_columns`: duplicates, spacings, bounds and edge margins [Å]."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


def _first_of_duplicates(pos, pixel):
    """Indices of the columns to keep: each one closer than a pixel to a kept earlier one is dropped."""
    if len(pos) < 2:
        return np.arange(len(pos))
    pairs = cKDTree(pos).query_pairs(pixel, output_type="ndarray")
    drop = np.zeros(len(pos), dtype=bool)
    for i, j in sorted(map(tuple, np.sort(pairs, axis=1).tolist())):
        if not drop[i]:
            drop[j] = True
    return np.flatnonzero(~drop)


def _max_width(shape, pixel, nn):
    """The widest Gaussian the fit may try [Å]: half the image, and at most twice the column
    spacing (at least four pixels). Wider ones describe no column, and the kernels' memory
    grows with the width."""
    limit = 0.5 * max(shape) * pixel
    if np.isfinite(nn):
        limit = min(limit, max(2.0 * nn, 4.0 * pixel))
    return float(limit)


def _bounds(shape, pixel, margin):
    """The box the column centres must stay in: the image and ``margin`` [Å] beyond it."""
    return (-margin, (shape[1] - 1) * pixel + margin, -margin, (shape[0] - 1) * pixel + margin)


def _edge_margin(pos, pixel):
    """How far outside the image a column centre may lie and still be fitted [Å]: a quarter of
    the column spacing (its flank then covers the edge pixels), at least one pixel."""
    nn = _nearest_neighbour(pos)
    return float(max(pixel, 0.25 * nn if np.isfinite(nn) else pixel))


def _neighbour_distances(pos):
    """Distance of each column to its nearest neighbour [Å] (inf for a lone column)."""
    if len(pos) < 2:
        return np.full(len(pos), np.inf)
    return cKDTree(pos).query(pos, k=2)[0][:, 1]


def _nearest_neighbour(pos):
    if len(pos) < 2:
        return np.inf
    d, _ = cKDTree(pos).query(pos, k=2)
    return float(np.median(d[:, 1]))
