"""Stage: lattices of fitted columns (sublattices, StatSTEM files, strain and displacement maps)."""

from .basis import LatticeBasis, find_basis, fractional, lattice_points
from .sublattice import Sublattices, find_sublattices

__all__ = [
    "LatticeBasis",
    "Sublattices",
    "find_basis",
    "find_sublattices",
    "fractional",
    "lattice_points",
]
