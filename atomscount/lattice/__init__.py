"""Stage: lattices of fitted columns (sublattices, StatSTEM files, strain and displacement maps)."""

from .basis import LatticeBasis, find_basis, fractional, lattice_points
from .editor import ColumnEditor
from .polarisation import PolarisationMap, polarisation_map
from .statstem import StatSTEMResult, read_statstem, write_statstem
from .strain import StrainMap, reference_cells, reference_mask, strain_map
from .sublattice import Sublattices, find_sublattices

__all__ = [
    "ColumnEditor",
    "LatticeBasis",
    "PolarisationMap",
    "StatSTEMResult",
    "StrainMap",
    "Sublattices",
    "find_basis",
    "find_sublattices",
    "fractional",
    "lattice_points",
    "polarisation_map",
    "read_statstem",
    "reference_cells",
    "reference_mask",
    "strain_map",
    "write_statstem",
]
