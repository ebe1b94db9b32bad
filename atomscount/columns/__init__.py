"""Stage 1: atomic-column detection and joint Gaussian fitting."""

from .detect import add_columns, find_columns, remove_columns
from .detect_model import ColumnDetection, detect_columns
from .fit import ColumnCRLB, ColumnFit, crlb, fit_columns
from .lattice import estimate_spacing
from .model import ColumnModel, add_poisson_noise, gaussian2d, square_lattice
from .voronoi import voronoi_labels, voronoi_scs

__all__ = [
    "ColumnCRLB",
    "ColumnDetection",
    "ColumnFit",
    "ColumnModel",
    "add_columns",
    "add_poisson_noise",
    "crlb",
    "detect_columns",
    "estimate_spacing",
    "find_columns",
    "fit_columns",
    "gaussian2d",
    "remove_columns",
    "square_lattice",
    "voronoi_labels",
    "voronoi_scs",
]
