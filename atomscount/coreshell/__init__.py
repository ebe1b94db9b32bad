"""Constrained core-shell configuration search (after van den Bos et al., PRL 116, 246101 (2016)).

The 3D arrangement of a bimetallic particle (which lattice sites hold the core
element, which the shell element) from the SCS of its columns in one or two views,
with the atomic lensing model (van den Bos et al., PRL 116, 246101, 2016,
doi:10.1103/PhysRevLett.116.246101).
"""

from .forward import CORE, EMPTY, SHELL, ForwardModel, LensingTables
from .model import CoreShellModel
from .search import SearchWarning, core_codes, search_core_shell
from .sites import Columns, fcc_sites, group_columns, neighbour_pairs, tilt_rotation, zone_axis_rotation

__all__ = ["search_core_shell", "CoreShellModel", "SearchWarning", "core_codes", "CORE", "EMPTY", "SHELL", "Columns",
           "ForwardModel", "LensingTables", "fcc_sites", "group_columns", "neighbour_pairs", "tilt_rotation",
           "zone_axis_rotation"]  # fmt: skip
