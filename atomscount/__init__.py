"""atomscount: quantitative atomic-resolution HAADF-STEM.

Column fitting, abTEM simulation libraries, atom counting, core-shell search and
atom-tracing tomography.
"""

__version__ = "0.1.0"

from .columns import (
    ColumnCRLB,
    ColumnDetection,
    ColumnFit,
    ColumnModel,
    add_columns,
    add_poisson_noise,
    crlb,
    detect_columns,
    estimate_spacing,
    find_columns,
    fit_columns,
    remove_columns,
    voronoi_scs,
)
from .image import HAADFImage, normalise
from .io import read_image

__all__ = [
    "ColumnCRLB",
    "ColumnDetection",
    "ColumnFit",
    "ColumnModel",
    "HAADFImage",
    "__version__",
    "add_columns",
    "add_poisson_noise",
    "crlb",
    "detect_columns",
    "estimate_spacing",
    "find_columns",
    "fit_columns",
    "normalise",
    "read_image",
    "remove_columns",
    "voronoi_scs",
]
