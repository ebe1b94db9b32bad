"""Small atomic models for examples and tests."""

from __future__ import annotations

import numpy as np

__all__ = ["fcc_ball"]


def fcc_ball(lattice_constant: float, radius: float) -> np.ndarray:
    """Sites (n, 3) [Å] of an fcc lattice (a site at the origin) within ``radius`` of the origin."""
    k = int(np.ceil(radius / lattice_constant)) + 1
    r = np.arange(-2 * k, 2 * k + 1)
    ijk = np.stack(np.meshgrid(r, r, r, indexing="ij"), axis=-1).reshape(-1, 3)
    ijk = ijk[ijk.sum(axis=1) % 2 == 0]
    xyz = ijk * (lattice_constant / 2.0)
    return xyz[np.linalg.norm(xyz, axis=1) <= radius]
