"""Atom-tracing tomography: tilt series, reconstruction, atom tracing and classification (after Yang et al., 2017).

Conventions (angles, rotations, the volume grid) are in :mod:`atomscount.tomo.geometry`
and :mod:`atomscount.tomo._kernels`.
"""

from .align import align_projections, concentration_map
from .classify import classify_atoms, compare_models
from .geometry import TiltSeries, euler_angles, read_tilt_series, rotation_matrices
from .reconstruct import Volume, reconstruct
from .refine import fit_class_strengths, project_model, refine_angles, refine_atoms
from .simulate import element_strengths, simulate_tilt_series
from .structure import (
    bond_orientational_order,
    detect_lattice,
    lattice_order,
    nearest_neighbour_distance,
    pair_distribution,
    random_packing,
)
from .trace import TracedAtoms, trace_atoms

__all__ = ["TiltSeries", "TracedAtoms", "Volume", "align_projections", "bond_orientational_order", "classify_atoms",
           "compare_models", "concentration_map", "detect_lattice", "euler_angles", "fit_class_strengths",
           "lattice_order", "nearest_neighbour_distance", "pair_distribution", "random_packing",
           "element_strengths", "project_model", "read_tilt_series", "reconstruct", "refine_angles", "refine_atoms",
           "rotation_matrices", "simulate_tilt_series", "trace_atoms"]  # fmt: skip
