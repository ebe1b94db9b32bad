"""Stage: lattices of fitted columns (sublattices, StatSTEM files, strain and displacement maps)."""

from .basis import LatticeBasis, find_basis, fractional, lattice_points

__all__ = [
    "LatticeBasis",
    "find_basis",
    "fractional",
    "lattice_points",
]
