"""Stage: lattices of fitted columns (sublattices, StatSTEM files, strain and displacement maps)."""

from .basis import LatticeBasis, find_basis, fractional, lattice_points
from .statstem import StatSTEMResult, read_statstem, write_statstem
from .sublattice import Sublattices, find_sublattices

__all__ = [
    "LatticeBasis",
    "StatSTEMResult",
    "Sublattices",
    "find_basis",
    "find_sublattices",
    "fractional",
    "lattice_points",
    "read_statstem",
    "write_statstem",
]
